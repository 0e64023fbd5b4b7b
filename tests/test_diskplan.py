"""The disk a checkpoint schedule needs: estimated before the run, compared with what a real run wrote and with
the free space (a warning when it will not fit)."""

from __future__ import annotations

import json
import subprocess

import pytest

from parc import archs
from parc.config import compose
from parc.store import diskplan
from parc.training.runconfig import Plan

from conftest import run_cli, short_run, train


def estimate_for(overrides):
    cfg = compose(overrides)
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed, device="meta")
    return diskplan.plan_for(cfg, model, Plan.build(cfg))


def test_the_estimate_matches_the_bytes_a_run_writes(demo_root, tmp_path):
    out = tmp_path / "run"
    overrides = short_run(demo_root, out, "checkpoint.keep_train_states=2", steps=6, every=2)
    before = estimate_for(overrides)
    train(*overrides)
    written = [p for p in out.rglob("*") if p.is_file() and p.name != "config.yaml"]
    actual = sum(p.stat().st_size for p in written)
    assert before.checkpoints == 4 and before.states == 2
    assert before.total == pytest.approx(actual, rel=0.02), (before, actual)
    weights = [
        sum(
            meta["size"]
            for rel, meta in json.loads((c / "parc_checkpoint.json").read_text())["files"].items()
            if not rel.startswith("training_state/")
        )
        for c in sorted(out.glob("checkpoint-*"))
    ]
    assert before.weights_bytes == pytest.approx(sum(weights) / len(weights), rel=0.02)
    assert before.peak == before.total + before.state_bytes  # pruning: one state more while the newest is written
    assert estimate_for(overrides).checkpoints == 0  # all written: nothing left to add


def test_the_parc_schedule_needs_about_260_gb_of_weights(tmp_path):
    est = estimate_for([f"paths.root={tmp_path}"])
    assert est.checkpoints == 401  # every 10 steps of 4000, and step 0
    assert est.weights_bytes * est.checkpoints == pytest.approx(260e9, rel=0.03)  # the figure for Parc
    assert est.state_bytes == pytest.approx(2 * est.weights_bytes, rel=0.02)  # AdamW: two moments per weight


@pytest.mark.slow
def test_dry_run_warns_when_the_schedule_will_not_fit(tmp_path):
    point = tmp_path / "small"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        result = run_cli(
            "parc.train", "experiment=demo", f"paths.root={tmp_path}", f"output_dir={point}/run", "dry_run=true"
        )
        assert result.returncode == 0, result.stderr
        assert "disk warning" in result.stdout and "the checkpoint schedule needs ~" in result.stdout
        assert f"only 1.0 MB are free at {point}" in result.stdout
        assert list(point.iterdir()) == []  # a dry run writes nothing
        roomy = run_cli(
            "parc.train", "experiment=demo", f"paths.root={tmp_path}", f"output_dir={tmp_path}/run", "dry_run=true"
        )
        assert "disk " in roomy.stdout and "disk warning" not in roomy.stdout
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
