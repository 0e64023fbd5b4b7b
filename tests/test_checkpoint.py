"""Checkpoint files: atomic writes, completeness, numeric ordering, safe loading, pruning."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from accelerate import Accelerator

from parc import archs
from parc.config import compose
from parc.errors import ParcError
from parc.store import checkpoint
from parc.training.optim import build_optimizer, build_scheduler


@pytest.fixture()
def parts(tmp_path):
    cfg = compose(["experiment=demo", "arch=pythia"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    optimizer = build_optimizer(model, cfg.trainer, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, cfg.trainer)
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "tokenizer.json").write_text("{}")
    return Accelerator(cpu=True), model, optimizer, scheduler, tokenizer_dir


def save(parts, out, step, scheduled=True):
    acc, model, optimizer, scheduler, tokenizer_dir = parts
    return checkpoint.save(
        acc, out, step, model, optimizer, scheduler, tokenizer_dir, {"step": step, "tokens": step * 10}, scheduled
    )


def test_a_crash_mid_write_leaves_nothing_that_looks_complete(parts, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    save(parts, out, 2)

    def crash(*args, **kwargs):
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError):
        save(parts, out, 4)
    monkeypatch.undo()
    assert not (out / "checkpoint-4").exists()
    assert [p.name for p in checkpoint.complete_checkpoints(out)] == ["checkpoint-2"]
    assert checkpoint.newest_resumable(out).name == "checkpoint-2"
    save(parts, out, 4)  # the next save cleans the partial directory up
    assert not any(p.name.endswith(".partial") for p in out.iterdir())


def test_a_directory_without_its_manifest_is_incomplete(parts, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    save(parts, out, 9)
    save(parts, out, 10)
    assert [p.name for p in checkpoint.complete_checkpoints(out)] == ["checkpoint-9", "checkpoint-10"]
    (out / "checkpoint-10" / checkpoint.MANIFEST).unlink()
    assert checkpoint.newest_resumable(out).name == "checkpoint-9"


def test_manifest_lists_every_file_with_its_hash(parts, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    path = save(parts, out, 3)
    manifest = json.loads((path / checkpoint.MANIFEST).read_text())
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {checkpoint.MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert {"model.safetensors", "config.json", "tokenizer.json", "training_state/optimizer.pt"} <= on_disk
    assert manifest["step"] == 3 and manifest["tokens"] == 30


def test_training_state_loads_safely_and_a_planted_pickle_is_refused(parts, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    path = save(parts, out, 1)
    state = checkpoint.load_train_state(path, 0)
    assert state["trainer"]["step"] == 1 and "state" in state["optimizer"]
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(path / "training_state" / "optimizer.pt", "wb") as f:
        pickle.dump({"state": Payload()}, f)
    with pytest.raises(ParcError, match="refusing to load"):
        checkpoint.load_train_state(path, 0)
    assert not marker.exists()


def test_prune_keeps_weights_and_protected_states(parts, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for step in (0, 1, 2, 3):
        save(parts, out, step)
    pruned = checkpoint.prune_train_states(out, keep=1, protect={1})
    assert pruned == [0, 2]
    assert [checkpoint.has_train_state(out / f"checkpoint-{s}") for s in range(4)] == [False, True, False, True]
    assert all(checkpoint.is_complete(out / f"checkpoint-{s}") for s in range(4))
    assert all((out / f"checkpoint-{s}" / "model.safetensors").exists() for s in range(4))
