"""Checkpoint integrity: every file the manifest lists is checked (size, sha256) before a run trusts it."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from accelerate import Accelerator

from parc import archs
from parc.config import compose
from parc.errors import ParcError
from parc.store import checkpoint, integrity
from parc.training.optim import build_optimizer, build_scheduler


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with real checkpoints 0, 1 and 2 of the demo Pythia (one optimizer step between each)."""
    cfg = compose(["experiment=demo", "arch=pythia"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    optimizer = build_optimizer(model, cfg.trainer, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, cfg.trainer)
    root = tmp_path_factory.mktemp("integrity")
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    out = root / "run"
    out.mkdir()
    for step in range(3):
        if step:
            ids = torch.randint(0, cfg.data.vocab_size, (2, 16))
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
        checkpoint.save(
            Accelerator(cpu=True),
            out,
            step,
            model,
            optimizer,
            scheduler,
            root / "tokenizer",
            {"step": step, "tokens": step * 10},
            scheduled=True,
        )
    return out


@pytest.fixture()
def copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def flip_byte(path, offset=-1):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_intact_checkpoints_verify_with_their_hashes(run):
    for path in integrity.checkpoint_dirs(run):
        verdict = integrity.verify(path)
        assert verdict.ok and verdict.sha256_checked and verdict.train_state, verdict
        on_disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != checkpoint.MANIFEST)
        assert verdict.bytes == on_disk


@pytest.mark.parametrize(
    "damage,phrase",
    [
        ("truncate", "model.safetensors is truncated: 100 of"),
        ("flip", "model.safetensors does not match its sha256"),
        ("delete", "model.safetensors is missing"),
        ("directory", "model.safetensors is not a regular file"),
        ("grow", "model.safetensors has"),
    ],
)
def test_each_kind_of_damage_is_named(copy, damage, phrase):
    target = copy / "checkpoint-2" / "model.safetensors"
    if damage == "truncate":
        with open(target, "r+b") as handle:
            handle.truncate(100)
    elif damage == "flip":
        flip_byte(target)
    elif damage == "delete":
        target.unlink()
    elif damage == "directory":
        target.unlink()
        target.mkdir()
    else:
        with open(target, "ab") as handle:
            handle.write(b"\0")
    verdict = integrity.verify(copy / "checkpoint-2")
    assert verdict.status == integrity.DAMAGED and phrase in verdict.problem, verdict.problem
    # a flipped byte keeps the size: only the sha256 finds it
    assert integrity.verify(copy / "checkpoint-2", check_sha=False).ok == (damage == "flip")


def test_a_broken_manifest_means_incomplete_not_damaged(copy):
    (copy / "checkpoint-1" / checkpoint.MANIFEST).write_text("{not json")
    verdict = integrity.verify(copy / "checkpoint-1")
    assert verdict.status == integrity.INCOMPLETE and "cannot be read" in verdict.problem


def test_resume_auto_skips_damaged_checkpoints_and_says_which_file(copy, caplog):
    with open(copy / "checkpoint-2" / "training_state" / "optimizer.pt", "r+b") as handle:
        handle.truncate(10)
    flip_byte(copy / "checkpoint-1" / "model.safetensors", 5000)
    with caplog.at_level(logging.WARNING, logger="parc"):
        found = integrity.newest_verified(copy)
    assert found == copy / "checkpoint-0"
    messages = [r.getMessage() for r in caplog.records]
    assert any("checkpoint-2" in m and "training_state/optimizer.pt is truncated: 10 of" in m for m in messages)
    assert any("checkpoint-1" in m and "model.safetensors does not match its sha256" in m for m in messages)
    assert checkpoint.newest_resumable(copy) == copy / "checkpoint-2"  # what resume=auto picked before


def test_when_every_checkpoint_is_damaged_auto_refuses_rather_than_starting_over(copy):
    for step in range(3):
        (copy / f"checkpoint-{step}" / "config.json").write_text("{}")
    with pytest.raises(ParcError, match=r"every checkpoint .* is damaged \(checkpoint-2, checkpoint-1, checkpoint-0\)"):
        integrity.newest_verified(copy)


def test_a_named_damaged_checkpoint_is_a_one_line_error_naming_the_file(copy):
    (copy / "checkpoint-1" / "config.json").unlink()
    with pytest.raises(ParcError, match=r"checkpoint .*checkpoint-1 is damaged: config.json is missing"):
        integrity.require_verified(copy / "checkpoint-1")
    assert integrity.require_verified(copy / "checkpoint-2").ok


@pytest.mark.parametrize("content,phrase", [(b"", "it is empty"), ("half", "RuntimeError")])
def test_truncated_state_files_are_damaged_not_unsafe(copy, content, phrase):
    path = copy / "checkpoint-2" / "training_state" / "optimizer.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "half" else content)
    with pytest.raises(ParcError) as caught:
        checkpoint.load_train_state(copy / "checkpoint-2", 0)
    message = str(caught.value)
    assert "is damaged" in message and phrase in message and "safe set" not in message, message


def test_the_manifest_sha256_is_the_files_sha256(run):
    import hashlib

    manifest = json.loads((run / "checkpoint-2" / checkpoint.MANIFEST).read_text())
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256((run / "checkpoint-2" / rel).read_bytes()).hexdigest() == meta["sha256"], rel
