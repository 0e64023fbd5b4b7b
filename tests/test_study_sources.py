"""parc.study.sources.runs on real runs: which checkpoints `runs=` / `steps=` name, what they are, and loading them
with one module per architecture (weights equal to a fresh from_pretrained). Hub sources: tests/test_evaluate.py."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST
from parc.study.sources.model_cache import ModelCache
from parc.study.sources.runs import default_out, parse_name, resolve_runs, run_config

pytestmark = pytest.mark.timeout(1800)  # the first test trains the session's demo grid (conftest eval_grid)


def test_grid_root_and_run_dirs_resolve_to_every_checkpoint(eval_grid):
    refs = resolve_runs(str(eval_grid))
    assert [(r.run, r.step) for r in refs] == [
        (run, step)
        for run in ("mamba-seed0-shard0", "pythia-seed0-shard0", "pythia-seed1-shard0")
        for step in (0, 4, 8)
    ]
    ref = next(r for r in refs if r.run == "pythia-seed1-shard0" and r.step == 8)
    manifest_file = eval_grid / "pythia-seed1-shard0" / "checkpoint-8" / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    assert (ref.arch, ref.size, ref.seed, ref.shard, ref.data_seed) == ("pythia", "tiny", 1, 0, None)
    assert ref.tokens == manifest["tokens"]
    weights = {k: v["sha256"] for k, v in manifest["files"].items() if not k.startswith("training_state/")}
    assert (
        weights
        and ref.commit == hashlib.sha256(json.dumps({"step": 8, "files": weights}, sort_keys=True).encode()).hexdigest()
    )
    assert run_config(ref)["trainer"]["max_steps"] == 8
    # A run dir and a repeated name: the same refs, once; steps= filters.
    some = resolve_runs(f"{eval_grid}/pythia-seed0-shard0,{eval_grid}/pythia-seed0-shard0", steps=[8, 4])
    assert [(r.run, r.step) for r in some] == [("pythia-seed0-shard0", 4), ("pythia-seed0-shard0", 8)]
    assert default_out(str(eval_grid), "evals") == eval_grid / "evals"
    assert default_out(f"{eval_grid}/pythia-seed0-shard0", "evals") == eval_grid / "evals"


def test_pruning_the_training_state_keeps_the_identity(eval_grid, tmp_path):
    from parc.store.checkpoint import has_train_state, prune_train_states

    run = tmp_path / "pythia-seed0-shard0"
    shutil.copytree(eval_grid / "pythia-seed0-shard0", run)
    before = {r.step: r.commit for r in resolve_runs(str(run))}
    pruned = prune_train_states(run, keep=1)
    assert pruned and not has_train_state(run / f"checkpoint-{pruned[0]}")  # the manifests were rewritten
    assert {r.step: r.commit for r in resolve_runs(str(run))} == before


def test_bad_sources_are_one_line_errors(eval_grid, tmp_path):
    (tmp_path / "empty-run" / "checkpoint-3").mkdir(parents=True)  # never completed: no manifest
    cases = {
        str(tmp_path / "empty-run"): "no complete checkpoint",
        str(tmp_path / "nowhere"): "no such directory",
        str(tmp_path / "empty-run" / "checkpoint-3"): "holds no runs",
    }
    for runs, message in cases.items():
        with pytest.raises(ParcError, match=message):
            resolve_runs(runs)
    with pytest.raises(ParcError, match="no checkpoint at step 5"):
        resolve_runs(str(eval_grid), steps=[4, 5])
    with pytest.raises(ParcError, match="not a valid regular expression"):
        parse_name("x", "seed(?P<seed")


def test_names_tell_what_manifests_do_not():
    assert parse_name("EleutherAI/pythia-160m-seed3@step1000") == {
        "arch": "pythia",
        "size": "160m",
        "seed": "3",
        "step": "1000",
    }
    assert parse_name("lab/model-s7@ckpt_20", r"-s(?P<seed>\d+)@ckpt_(?P<step>\d+)") == {"seed": "7", "step": "20"}


def test_one_module_per_architecture_holds_each_checkpoints_weights(eval_grid, tmp_path):
    from transformers import AutoModelForCausalLM

    refs = resolve_runs(str(eval_grid), steps=[4, 8])
    cache = ModelCache()
    modules = {}
    for ref in refs:
        with cache.open(ref) as loaded:
            fresh = AutoModelForCausalLM.from_pretrained(ref.local_dir, dtype=torch.float32).state_dict()
            state = loaded.model.state_dict()
            assert set(state) == set(fresh) and all(torch.equal(state[k], fresh[k]) for k in fresh), ref.run
            modules.setdefault(ref.arch, set()).add(id(loaded.model))
            assert loaded.max_length == (512 if ref.arch == "pythia" else 128)  # positions; Mamba: trained seq_len
            ids = loaded.tokenizer("to be or not to be")["input_ids"]
            assert ids and max(ids) < loaded.model.config.vocab_size
    assert {arch: len(ids) for arch, ids in modules.items()} == {"mamba": 1, "pythia": 1}
    assert cache.builds == 2 and cache.loads == len(refs)
    # A bare HF directory (no run around it) is a source too; its step comes from its name.
    bare = tmp_path / "exported" / "step8"
    shutil.copytree(
        eval_grid / "pythia-seed1-shard0" / "checkpoint-8",
        bare,
        ignore=shutil.ignore_patterns(MANIFEST, "training_state"),
    )
    (ref,) = resolve_runs(str(bare))
    assert (ref.arch, ref.step, ref.seed) == ("gpt_neox", 8, None)
