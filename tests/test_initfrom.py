"""init_from=: a new run from another run's weights (a local checkpoint or a Hub revision), with a fresh
optimizer, schedule and step counter, and the source recorded; resuming refuses a changed max_steps and
points there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from test_train import assert_refused, assert_same_weights, metrics

from conftest import short_run, train
from hub_server import hub_server  # noqa: F401  (the fixture)

TOKEN = "hf_parcInitFromToken0123456789abcdef"


@pytest.fixture(scope="module")
def source(demo_root, tmp_path_factory):
    """A finished 8-step demo run (checkpoints 0, 4, 8)."""
    out = tmp_path_factory.mktemp("init-from") / "src"
    train(*short_run(demo_root, out))
    return out


def first_step_loss(checkpoint_dir, demo_root, overrides):
    """Step 1's loss computed independently: transformers' own loss of the source model on batch 1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from parc.config import compose
    from parc.data.stream import BatchPlan, open_stream

    cfg = compose(overrides)
    ids = torch.from_numpy(BatchPlan.from_config(cfg, open_stream(cfg)).batch(1).astype("int64"))
    eos = AutoTokenizer.from_pretrained(checkpoint_dir).eos_token_id
    labels = torch.where(ids == eos, -100, ids)  # the recipe's collator: EOS labels are not predicted
    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


@pytest.mark.slow
@pytest.mark.timeout(900)  # six training commands: minutes on a shared 2-core machine
def test_resume_refuses_a_new_max_steps_and_init_from_continues_the_weights(demo_root, tmp_path, source):
    # "continue the finished run for longer": resume refuses, and says why and what to do instead
    before = (source / "metrics.jsonl").read_text()
    result = train(*short_run(demo_root, source, steps=12), expect=2)
    assert_refused(
        result,
        "trainer.max_steps=8, this run asks for 12",
        "data slice",
        "schedule",
        f"init_from={source / 'checkpoint-8'}",
    )
    assert (source / "metrics.jsonl").read_text() == before

    new = tmp_path / "new"
    overrides = short_run(demo_root, new, f"init_from={source / 'checkpoint-8'}", steps=4, every=2)
    result = train(*overrides)
    assert "starting a new run from the weights of src/checkpoint-8" in result.stdout
    assert_same_weights(new / "checkpoint-0", source / "checkpoint-8")  # checkpoint-0 = the init = the source
    rows = metrics(new)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[0]["tokens"] == 16 * 128  # a fresh step counter
    assert rows[0]["lr"] == 0.0  # a fresh schedule: warmup starts again from 0
    assert rows[0]["loss"] == pytest.approx(first_step_loss(source / "checkpoint-8", demo_root, overrides), rel=1e-5)
    assert all(r["init_from"] == "src/checkpoint-8" for r in rows)
    optimizer = torch.load(new / "checkpoint-4" / "training_state" / "optimizer.pt", weights_only=True)
    assert {float(s["step"]) for s in optimizer["state"].values()} == {4.0}  # fresh AdamW: 4 updates, not 12

    expected = {
        "source": "src/checkpoint-8",
        "step": 8,
        "tokens": 8 * 16 * 128,
        "weights_sha256": hashlib.sha256((source / "checkpoint-8" / "model.safetensors").read_bytes()).hexdigest(),
    }
    for step in (0, 4):
        manifest = json.loads((new / f"checkpoint-{step}" / "parc_checkpoint.json").read_text())
        state = json.loads((new / f"checkpoint-{step}" / "training_state" / "trainer_state.json").read_text())
        assert manifest["init_from"] == expected and state["init_from"] == expected
        assert str(tmp_path) not in json.dumps(state)  # no local path in anything a Hub push would publish
    assert "init_from: src/checkpoint-8" in (new / "config.yaml").read_text()

    # the branched run resumes as its own run (no init_from= needed); another source is refused
    result = train(*short_run(demo_root, new, "resume=checkpoint-2", steps=4, every=2))
    assert [r["loss"] for r in metrics(new)] == [r["loss"] for r in rows]
    result = train(*short_run(demo_root, new, f"init_from={source / 'checkpoint-4'}", steps=4, every=2), expect=2)
    assert_refused(result, "different init_from", "src/checkpoint-8", "src/checkpoint-4")


@pytest.mark.timeout(600)
def test_init_from_a_hub_revision(hub_server, demo_root, eval_grid, tmp_path):
    source = eval_grid / "pythia-seed0-shard0"  # an 8-step demo run, checkpoints 0, 4, 8 (read only)
    hub_server.state.token = TOKEN
    env = {**os.environ, **hub_server.env(TOKEN)}
    push = (
        "import sys; from pathlib import Path; from parc.hub.repo import HubRepo; repo = HubRepo('org/src'); "
        "repo.ensure(private=True); repo.push('checkpoint-4', Path(sys.argv[1]), True, {})"
    )
    pushed = subprocess.run(
        [sys.executable, "-c", push, str(source / "checkpoint-4")], env=env, capture_output=True, text=True, timeout=240
    )
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    commit = hub_server.state.repos["org/src"].branches["checkpoint-4"]

    new = tmp_path / "new"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parc.train",
            *short_run(demo_root, new, "init_from=hub:org/src@checkpoint-4", steps=2, every=2),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_weights(new / "checkpoint-0", source / "checkpoint-4")
    manifest = json.loads((new / "checkpoint-2" / "parc_checkpoint.json").read_text())
    assert manifest["init_from"]["source"] == "hub:org/src@checkpoint-4" and manifest["init_from"]["step"] == 4
    assert manifest["init_from"]["commit"] == commit
    assert sorted(p.name for p in new.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-2"]  # the download is apart
    assert (new / "init_from" / "checkpoint-4" / "model.safetensors").read_bytes() == (
        source / "checkpoint-4" / "model.safetensors"
    ).read_bytes()

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parc.train",
            *short_run(demo_root, tmp_path / "other", "init_from=hub:org/src@checkpoint-9"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_refused(result, "checkpoint-9 is not a revision of org/src")
