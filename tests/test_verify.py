"""`python -m parc.verify`: every checkpoint of a run or a grid checked without training, as a table or JSON;
the exit status says whether anything is damaged."""

from __future__ import annotations

import json
import shutil

from test_integrity import run  # noqa: F401  (the fixture: a run with real checkpoints 0, 1, 2)

from conftest import run_cli


def test_a_grid_is_checked_and_damage_is_reported(run, tmp_path):
    grid = tmp_path / "grid"
    for cell in ("pythia-seed0-shard0", "pythia-seed1-shard0"):
        shutil.copytree(run, grid / cell)
    result = run_cli("parc.verify", str(grid))
    assert result.returncode == 0, result.stderr
    assert "6 checkpoints in 2 runs: 6 ok" in result.stdout and "pythia-seed1-shard0" in result.stdout

    damaged = grid / "pythia-seed1-shard0" / "checkpoint-1" / "training_state" / "optimizer.pt"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"?")  # same size, other bytes
    result = run_cli("parc.verify", str(grid), env={"COLUMNS": "250"})  # wide enough that no cell wraps
    assert result.returncode == 1
    assert "5 ok, 1 damaged" in result.stdout and "does not match its sha256" in result.stdout
    assert run_cli("parc.verify", str(grid), "size_only=true").returncode == 0  # sizes alone cannot see it

    report = json.loads(run_cli("parc.verify", str(grid / "pythia-seed1-shard0"), "json=true").stdout)
    rows = report["runs"][str(grid / "pythia-seed1-shard0")]
    assert [(r["step"], r["status"]) for r in rows] == [(0, "ok"), (1, "damaged"), (2, "ok")]
    assert rows[1]["problem"].startswith("training_state/optimizer.pt does not match")


def test_a_path_without_checkpoints_is_a_one_line_error(tmp_path):
    result = run_cli("parc.verify", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: no checkpoint-N directories under")
    assert len(result.stderr.strip().splitlines()) == 1
