"""Batched surprisal against the paper's per-token loop (all three architectures), and `python -m parc.surprisal`."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from parc.study.phases.stimuli import parse_marked
from parc.study.phases.surprisal import StimulusEncoder, batches_by_length, score
from parc.study.phases.surprisal_reference import loop_all

from conftest import run_cli

# Multi-token targets, punctuation, apostrophes, a first-word target, digits, non-ASCII, an escaped tab.
LINES = [
    "The flat unraised spirits that *hath*",
    'He said, "go!" and then *didn\'t*',
    "*Hello*",
    "What duty they do owe *their*",
    "Fire that's closest kept burns *most*",
    "O, what a *rogue!*",
    "The price was $4.99, or *€3.50*",
    "I'll not *o'er-reach'd?*",
    "Tabs\\tand *tabs*",
    "Antidisestablishmentarianism is a *supercalifragilisticexpialidocious*",
    "And so *on;*",
    "Is this a dagger which I see before me, the handle toward my *hand?*",
]


@pytest.fixture(scope="module")
def demo_tokenizer(demo_root):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_root / "data" / "demo-parc-128" / "tokenizer"))


@pytest.fixture(scope="module")
def stimuli():
    return [parse_marked(line, "test", i) for i, line in enumerate(LINES)]


def test_encoding_follows_the_papers_conventions(demo_tokenizer, stimuli):
    encoded = StimulusEncoder(demo_tokenizer).encode_all(stimuli)
    assert demo_tokenizer.bos_token_id == 0
    for stimulus, item in zip(stimuli, encoded):
        # BOS (<|endoftext|> = 0) then the context; the target with its leading space, tokenized on its own
        context_ids = demo_tokenizer(stimulus.context)["input_ids"] if stimulus.context else []
        target_text = (" " if stimulus.context else "") + stimulus.target
        assert list(item.context) == [0] + context_ids
        assert list(item.target) == demo_tokenizer(target_text)["input_ids"]
        assert item.target_text == target_text
        assert item.sentence == demo_tokenizer.decode(context_ids + list(item.target))
    assert max(len(item.target) for item in encoded) >= 4  # multi-token targets are covered
    assert "[!StimulusMarker!]" not in demo_tokenizer.get_vocab()  # the caller's tokenizer is untouched


@pytest.mark.parametrize("arch", ["pythia", "mamba", "rwkv"])
def test_batched_equals_the_papers_per_token_loop(arch, demo_tokenizer, stimuli):
    import torch

    from parc.archs import build_model
    from parc.config import compose

    model = build_model(compose(["experiment=demo", f"arch={arch}"]).arch, len(demo_tokenizer), seed=3).eval()
    head = model.get_output_embeddings().weight
    if head.data_ptr() != model.get_input_embeddings().weight.data_ptr():  # Mamba's tied head is sharp already
        with torch.no_grad():  # sharper distributions than a fresh init, so that a misplaced position shows
            head.mul_(6.0)
    encoded = StimulusEncoder(demo_tokenizer).encode_all(stimuli)
    reference = np.array(loop_all(model, encoded))
    assert reference.std() > 1.0
    batched = score(model, encoded)
    assert np.max(np.abs(batched - reference)) <= 1e-4
    assert len(batches_by_length(encoded, 8192)) < len(encoded)  # stimuli really share forwards
    one_by_one = score(model, encoded, token_budget=1)  # every stimulus alone: batching changes nothing
    assert np.max(np.abs(one_by_one - batched)) <= 1e-5


@pytest.mark.slow
def test_cli_writes_the_papers_tsvs_and_the_table_incrementally(eval_grid, tmp_path):
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stims = tmp_path / "stimuli" / "set1.stims"
    stims.parent.mkdir()
    stims.write_text("\n".join(LINES))
    out = tmp_path / "analysis"
    runs = f"{eval_grid / 'pythia-seed0-shard0'},{eval_grid / 'mamba-seed0-shard0'}"
    args = ["parc.surprisal", f"stimuli={stims}", f"runs={runs}", "steps=4,8", f"out={out}"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]

    table = pd.read_parquet(out / "surprisal.parquet")
    assert len(table) == 4 * len(LINES)
    assert sorted(set(zip(table["arch"], table["step"]))) == [("mamba", 4), ("mamba", 8), ("pythia", 4), ("pythia", 8)]
    assert {"arch", "seed", "step", "stimulus_id", "surprisal", "num_tokens", "surprisal_bits"} <= set(table.columns)
    stimuli = [parse_marked(line, "test", i) for i, line in enumerate(LINES)]
    for arch in ("pythia", "mamba"):
        for step in (4, 8):
            tsv = out / f"set1.surprisal.{arch}-seed0-shard0___checkpoint-{step}.causal.output"
            lines = tsv.read_text().splitlines()
            assert lines[0] == "FullSentence\tSentence\tTargetWords\tSurprisal\tNumTokens"
            rows = [line.split("\t") for line in lines[1:]]
            assert [r[0] for r in rows] == [line.replace("*", "") for line in LINES]  # file order, escapes kept
            # independent reference: the checkpoint loaded as the paper loaded it, scored token by token
            checkpoint = eval_grid / f"{arch}-seed0-shard0" / f"checkpoint-{step}"
            encoded = StimulusEncoder(AutoTokenizer.from_pretrained(str(checkpoint))).encode_all(stimuli)
            if step == 8:  # the loop is slow (Mamba's reference scan): one checkpoint per architecture
                model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype="float32").eval()
                reference = np.array(loop_all(model, encoded))
                assert np.max(np.abs(np.array([float(r[3]) for r in rows]) - reference)) <= 1e-4
            assert [int(r[4]) for r in rows] == [len(e.target) for e in encoded]
            assert [r[2] for r in rows] == [e.target_text for e in encoded]
            mine = table[(table["arch"] == arch) & (table["step"] == step)].sort_values("stimulus_id")
            assert mine["surprisal"].tolist() == [float(r[3]) for r in rows]
            assert np.allclose(mine["surprisal_bits"], mine["surprisal"] / math.log(2))

    # a rerun scores nothing; losing one unit (as a kill would) redoes only that one
    parts = sorted((out / "parts" / "surprisal").glob("*.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    assert run_cli(*args).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in parts} == stamps
    os.remove(parts[0])
    assert run_cli(*args).returncode == 0
    assert parts[0].exists() and all(p.stat().st_mtime_ns == stamps[p] for p in parts[1:])
    assert pd.read_parquet(out / "surprisal.parquet").equals(table)


@pytest.mark.parametrize("content, expected", [("The cat *sat*\nno target\n", "line 2"), ("", "is empty")])
def test_bad_stimuli_are_refused_before_anything_is_written(tmp_path, content, expected):
    stims = tmp_path / "bad.stims"
    stims.write_text(content)
    out = tmp_path / "out"
    result = run_cli("parc.surprisal", f"stimuli={stims}", f"runs={tmp_path / 'missing'}", f"out={out}")
    assert result.returncode == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_missing_checkpoint_is_refused_before_anything_is_written(eval_grid, tmp_path):
    run = eval_grid / "pythia-seed0-shard0"
    stims = tmp_path / "ok.stims"
    stims.write_text("\n".join(LINES))
    out = tmp_path / "out"
    result = run_cli("parc.surprisal", f"stimuli={stims}", f"runs={run}", "steps=4,40", f"out={out}")
    assert result.returncode == 2 and "40" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
