"""`python -m parc.grid status` on hand-made run directories laid out as the trainer and the hub journal write them.

The end-to-end check against directories written by real Slurm array tasks is in test_slurm.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from parc.hub.journal import Journal
from parc.store.checkpoint import MANIFEST
from parc.store.fileio import atomic_write_json
from parc.training import grid

from conftest import run_cli


def make_cell(
    root: Path,
    arch: str,
    seed: int,
    *,
    max_steps: int,
    steps: int,
    checkpoints=(),
    partial_checkpoint=None,
    age_s: float = 0.0,
    torn_row: bool = False,
    journal=(),
) -> Path:
    """A run directory after `steps` updates: config.yaml, metrics.jsonl, complete checkpoints, a journal."""
    cell = root / f"{arch}-seed{seed}-shard0"
    cell.mkdir(parents=True)
    (cell / "config.yaml").write_text(OmegaConf.to_yaml({"trainer": {"max_steps": max_steps}, "seed": seed}))
    rows = [
        {"step": s, "loss": 10.0 - s / 10, "lr": 1e-3, "tokens": 128 * s, "time": 0.0, "batch_hash": f"h{s}"}
        for s in range(1, steps + 1)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if torn_row:  # a row being appended right now: no newline yet
        text += json.dumps({"step": steps + 1, "loss": 0.5})[:20]
    (cell / "metrics.jsonl").write_text(text)
    for step in checkpoints:
        (cell / f"checkpoint-{step}").mkdir()
        atomic_write_json(cell / f"checkpoint-{step}" / MANIFEST, {"step": step, "files": {}})
    if partial_checkpoint is not None:  # a directory without its manifest is not a checkpoint
        (cell / f"checkpoint-{partial_checkpoint}").mkdir()
    for revision, state in journal:
        step = int(revision.rsplit("-", 1)[1]) if revision != "main" else max_steps
        Journal(cell).record({"revision": revision, "step": step, "state": state})
    stamp = time.time() - age_s
    for path in [cell, *cell.rglob("*")]:
        os.utime(path, (stamp, stamp))
    return cell


@pytest.fixture
def run_root(tmp_path):
    root = tmp_path / "runs" / "demo"
    make_cell(
        root,
        "pythia",
        0,
        max_steps=20,
        steps=20,
        checkpoints=(0, 10, 20),
        journal=[("checkpoint-0", "pushed"), ("checkpoint-10", "pushed"), ("checkpoint-20", "pending")],
    )
    make_cell(root, "pythia", 1, max_steps=20, steps=13, checkpoints=(0, 10), partial_checkpoint=20, torn_row=True)
    make_cell(root, "mamba", 0, max_steps=20, steps=7, checkpoints=(0,), age_s=7200)
    # metrics reached the last step but its checkpoint is not complete: not done yet
    make_cell(root, "rwkv", 1, max_steps=20, steps=20, checkpoints=(0, 10), age_s=5)
    make_cell(root, "rwkv", 7, max_steps=40, steps=2, checkpoints=(0,))  # outside the asked-for seeds
    return root


def by_key(cells):
    return {(c.arch, c.seed): c for c in cells}


def test_states_steps_and_checkpoints(run_root):
    cells = by_key(grid.grid_cells(run_root, grid.PARC_ARCHS, [0, 1], shard=0, default_max_steps=99, stale_after=600))
    assert cells["pythia", 0].state == "done"
    assert (cells["pythia", 0].step, cells["pythia", 0].loss) == (20, pytest.approx(8.0))
    assert cells["pythia", 0].checkpoints == [0, 10, 20]
    assert (cells["pythia", 0].pushed, cells["pythia", 0].pending) == (
        ["checkpoint-0", "checkpoint-10"],
        ["checkpoint-20"],
    )
    running = cells["pythia", 1]
    assert (running.state, running.step, running.checkpoints) == ("running", 13, [0, 10])  # torn row, partial ckpt
    assert cells["mamba", 0].state == "stalled" and cells["mamba", 0].age_s > 7000
    assert cells["rwkv", 1].state == "running" and cells["rwkv", 1].step == 20
    assert cells["mamba", 1].state == "not started" and cells["mamba", 1].max_steps == 99
    assert cells["rwkv", 7].max_steps == 40  # found on disk, read from its own config
    order = [(c.arch, c.seed) for c in grid.grid_cells(run_root, grid.PARC_ARCHS, [0, 1], 0, 99, 600)]
    assert order == [("pythia", 0), ("pythia", 1), ("mamba", 0), ("mamba", 1), ("rwkv", 0), ("rwkv", 1), ("rwkv", 7)]


def test_stale_after_turns_running_into_stalled(run_root):
    cells = by_key(grid.grid_cells(run_root, ["pythia"], [1], 0, 20, stale_after=600, now=time.time() + 3600))
    assert cells["pythia", 1].state == "stalled"


def test_cli_json_and_table(run_root):
    out = run_cli("parc.grid", "status", f"root={run_root}", "seeds=0-1", "json=true")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["summary"] == {"done": 1, "running": 3, "stalled": 1, "not started": 2}
    assert len(report["cells"]) == 7
    table = run_cli("parc.grid", "status", f"root={run_root}", "seeds=0-1")
    assert table.returncode == 0, table.stderr
    assert "20/20" in table.stdout and "13/20" in table.stdout and "stalled" in table.stdout
    assert "2 (+1 pending)" in table.stdout  # pushed revisions of pythia seed 0


def test_cli_finds_the_run_from_overrides(run_root):
    paths_root = run_root.parents[1]
    out = run_cli("parc.grid", "status", f"paths.root={paths_root}", "run_name=demo", "json=true")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["root"] == str(run_root)


@pytest.mark.parametrize(
    "args, message",
    [
        (["status", "seeds=a-b"], "seeds="),
        (["status", "trainer.max_steps"], "write key=value"),
        (["status", "no_such_key=1"], "no_such_key"),
    ],
)
def test_cli_bad_input(args, message, tmp_path):
    out = run_cli("parc.grid", *args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and message in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
