"""metrics.jsonl has one reader (parc.store.metricsfile.read_metrics): a crash mid-write leaves a torn last line,
which every command reading the file (parc.plot, parc.grid status, the outlier alarm) leaves out; a damaged
line in the middle is a one-line error naming the file and the line."""

from __future__ import annotations

import json

import pytest

from parc.errors import ParcError
from parc.store.metricsfile import (
    METRICS_FILE,
    last_metrics_row,
    loss_curve,
    measured_step_s,
    read_metrics,
    truncate_metrics,
)

from conftest import run_cli_cases

ROWS = 12


def row(step: int) -> dict:
    return {"step": step, "loss": 10.0 / step, "lr": 1e-3 * step, "tokens": 128 * step, "time": 2.5 * step}


def write_run(run_dir, steps: int, tail: str = "", pad: int = 0):
    """A run directory whose metrics.jsonl holds `steps` whole rows, then `tail` (e.g. a torn row)."""
    run_dir.mkdir(parents=True)
    rows = [{**row(s), **({"pad": "x" * pad} if pad else {})} for s in range(1, steps + 1)]
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return run_dir / METRICS_FILE


def torn(step: int) -> str:
    """What a crash leaves of a row: its first characters, no newline."""
    return json.dumps(row(step))[:23]


def test_a_torn_last_line_is_left_out_and_a_torn_middle_line_names_itself(tmp_path):
    path = write_run(tmp_path / "run", ROWS, torn(ROWS + 1))
    rows = read_metrics(path)
    assert rows == [row(s) for s in range(1, ROWS + 1)]
    assert last_metrics_row(path) == row(ROWS)
    assert loss_curve(path) == {s: 10.0 / s for s in range(1, ROWS + 1)}
    assert measured_step_s(path) == pytest.approx(2.5)
    whole = tmp_path / "whole.jsonl"  # a last row written in full but for its newline is a whole row
    whole.write_text(path.read_text().rpartition("\n")[0] + "\n" + json.dumps(row(ROWS + 1)))
    assert [r["step"] for r in read_metrics(whole)] == list(range(1, ROWS + 2))

    damaged = tmp_path / "damaged.jsonl"
    lines = path.read_text().split("\n")
    damaged.write_text("\n".join(lines[:4] + [torn(5)] + lines[4:]))  # line 5 cut short, more rows after it
    for read in (read_metrics, last_metrics_row, loss_curve):
        with pytest.raises(ParcError, match=rf"^{damaged} line 5 is not a metrics row"):
            read(damaged)


def test_the_tail_reader_agrees_with_the_whole_file(tmp_path):
    path = write_run(tmp_path / "run", 400, torn(401), pad=300)  # ~130 KB: beyond the 64 KB tail
    assert path.stat().st_size > 2 * (1 << 16)
    assert last_metrics_row(path) == read_metrics(path)[-1] and read_metrics(path)[-1]["step"] == 400
    assert last_metrics_row(path, tail_bytes=700) == read_metrics(path)[-1]  # the tail starts inside a row
    lines = path.read_text().split("\n")
    lines[397] = lines[397][:50]  # a damaged row inside the tail: named by its line number in the file
    path.write_text("\n".join(lines))
    with pytest.raises(ParcError, match=r"line 398 is not a metrics row"):
        last_metrics_row(path)
    assert last_metrics_row(tmp_path / "none.jsonl") is None and loss_curve(tmp_path / "none.jsonl") == {}


def test_a_resume_rewrites_whole_rows_only(tmp_path):
    path = write_run(tmp_path / "run", 5, torn(6))
    truncate_metrics(path, 3)
    assert path.read_text() == "".join(json.dumps(row(s)) + "\n" for s in (1, 2, 3))
    before = path.stat().st_mtime_ns
    truncate_metrics(path, 3)  # nothing to drop: left as it is
    assert path.stat().st_mtime_ns == before


def test_commands_read_a_torn_file(tmp_path):
    grid = tmp_path / "runs" / "demo"
    path = write_run(grid / "pythia-seed0-shard0", ROWS, torn(ROWS + 1))
    lines = path.read_text().split("\n")
    damaged = grid.parent / "damaged" / "pythia-seed0-shard0"
    damaged.mkdir(parents=True)
    (damaged / METRICS_FILE).write_text("\n".join(lines[:2] + [torn(3)] + lines[2:]))
    drawn, refused, status = run_cli_cases(
        None,
        [
            ["parc.plot", str(grid / "pythia-seed0-shard0"), f"out={tmp_path / 'loss.png'}"],
            ["parc.plot", str(damaged), f"out={tmp_path / 'damaged.png'}"],
            ["parc.grid", "status", f"root={grid}", "seeds=0", "json=true"],
        ],
    )
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"error: {damaged / METRICS_FILE} line 3 is not a metrics row")
    assert not (tmp_path / "damaged.png").exists()
    assert status.returncode == 0, status.stderr
    (cell,) = [c for c in json.loads(status.stdout)["cells"] if c["arch"] == "pythia"]
    assert (cell["step"], cell["loss"], cell["tokens"]) == (ROWS, 10.0 / ROWS, 128 * ROWS)


def test_the_plot_draws_every_complete_row(tmp_path, monkeypatch):
    """What parc.plot draws: the lines hold the N whole rows of a file ending in a torn one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from parc.study import find_runs, plot_runs

    run = tmp_path / "pythia-seed0-shard0"
    write_run(run, ROWS, torn(ROWS + 1))
    runs = find_runs([str(run)])
    drawn = []
    original = plt.Axes.plot

    def spy(self, x, y, *args, **kwargs):
        drawn.append((list(x), list(y)))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "plot", spy)  # the real drawing, watched
    plot_runs(runs, tmp_path / "loss.png")
    steps = list(range(1, ROWS + 1))
    assert drawn == [(steps, [10.0 / s for s in steps]), (steps, [1e-3 * s for s in steps])]
