"""Resuming through `python -m parc.train` as a user does: kill -9 and preemption (SIGTERM) resume
bit-identically, a named checkpoint resumes and impossible ones are refused, a damaged checkpoint is skipped
by resume=auto and refused by name. (Split from tests/test_train.py so the two xdist workers share the load.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_train import assert_refused, assert_same_weights, losses, metrics, weights  # noqa: F401

from conftest import short_run, train


def wait_for(predicate, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "training ended before the condition was met"
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def start_train(*overrides):
    return subprocess.Popen(
        [sys.executable, "-m", "parc.train", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


@pytest.mark.parametrize("how", ["kill -9", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_interrupted_run_resumes_bit_identically(demo_root, eval_grid, tmp_path, how):
    # the reference: the session grid's uninterrupted pythia seed 0 (8 steps, checkpoints every 4); the
    # interrupted run checkpoints every 2 (how often a run saves must not change what it trains) and is
    # stopped once checkpoint-2 exists, six steps before its end
    reference, interrupted = eval_grid / "pythia-seed0-shard0", tmp_path / "interrupted"
    overrides = dict(steps=8, every=2)
    proc = start_train(*short_run(demo_root, interrupted, **overrides))
    wait_for(lambda: (interrupted / "checkpoint-2" / "parc_checkpoint.json").exists(), proc)
    if how == "kill -9":
        proc.kill()
        assert proc.wait() == -signal.SIGKILL
    else:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 75  # checkpoint written, asking to be requeued
        assert (
            interrupted / "checkpoint-{}".format(metrics(interrupted)[-1]["step"]) / "parc_checkpoint.json"
        ).exists()
    assert not (interrupted / "checkpoint-8").exists()
    result = train(*short_run(demo_root, interrupted, **overrides))
    assert "resuming from" in result.stdout
    assert losses(interrupted) == losses(reference)
    assert [r["step"] for r in metrics(interrupted)] == list(range(1, 9))
    assert_same_weights(interrupted / "checkpoint-8", reference / "checkpoint-8")


@pytest.mark.slow
def test_resume_from_a_named_checkpoint_and_refusals(demo_root, tmp_path):
    out = tmp_path / "run"
    train(*short_run(demo_root, out))
    # resume=none on an existing run is refused, and nothing is touched
    before = (out / "metrics.jsonl").read_text()
    result = train(*short_run(demo_root, out, "resume=none"), expect=2)
    assert "already holds a run" in result.stderr and (out / "metrics.jsonl").read_text() == before
    # continuing with a different recipe is refused
    result = train(*short_run(demo_root, out, "trainer.lr=0.01", "resume=checkpoint-4"), expect=2)
    assert "different trainer.lr" in result.stderr
    # a missing resume target is refused and lists what exists
    result = train(*short_run(demo_root, out, "resume=checkpoint-5"), expect=2)
    assert "checkpoint-4" in result.stderr and "checkpoint-8" in result.stderr
    # resume=checkpoint-4 redoes steps 5..8 identically
    reference = losses(out)
    train(*short_run(demo_root, out, "resume=checkpoint-4"))
    assert losses(out) == reference


@pytest.mark.slow
@pytest.mark.timeout(600)  # four training commands
def test_a_damaged_checkpoint_is_skipped_by_auto_and_refused_by_name(demo_root, tmp_path):
    out = tmp_path / "run"
    train(*short_run(demo_root, out))
    reference, final_weights = losses(out), (out / "checkpoint-8" / "model.safetensors").read_bytes()
    with open(out / "checkpoint-8" / "model.safetensors", "r+b") as handle:  # an interrupted copy
        handle.truncate(len(final_weights) // 2)
    (out / "checkpoint-0" / "training_state" / "optimizer.pt").write_bytes(b"")  # a truncated state file
    result = train(*short_run(demo_root, out, "resume=checkpoint-8"), expect=2)
    assert_refused(
        result,
        "checkpoint-8 is damaged: model.safetensors is truncated: "
        f"{len(final_weights) // 2} of {len(final_weights)} bytes",
    )
    result = train(*short_run(demo_root, out, "resume=checkpoint-0"), expect=2)
    assert_refused(result, "checkpoint-0 is damaged: training_state/optimizer.pt is truncated: 0 of")
    result = train(*short_run(demo_root, out))  # resume=auto: the newest checkpoint that verifies
    assert "skipping checkpoint-8: model.safetensors is truncated" in result.stderr
    assert f"resuming from {out / 'checkpoint-4'}" in result.stdout
    assert losses(out) == reference
    assert (out / "checkpoint-8" / "model.safetensors").read_bytes() == final_weights
