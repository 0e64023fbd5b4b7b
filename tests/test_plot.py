"""`python -m parc.plot` draws the curves of every run it is pointed at."""

from __future__ import annotations

import json

from conftest import run_cli


def write_run(directory, losses):
    directory.mkdir(parents=True)
    rows = [{"step": i + 1, "loss": loss, "lr": 1e-3} for i, loss in enumerate(losses)]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plot_a_grid_of_runs(tmp_path):
    for arch in ("pythia", "mamba"):
        for seed in (0, 1):
            write_run(tmp_path / "runs" / f"{arch}-seed{seed}-shard0", [7.0, 6.0, 5.5 - seed])
    out = tmp_path / "plots" / "loss.png"
    result = run_cli("parc.plot", str(tmp_path / "runs"), f"out={out}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_refuses_a_directory_without_runs(tmp_path):
    result = run_cli("parc.plot", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: no metrics.jsonl")
