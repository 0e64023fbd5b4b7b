"""mini-Parc end to end on a very small grid: every stage's output, then a rerun that redoes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mini_parc_small_grid_and_rerun(demo_root, tmp_path):
    out = tmp_path / "grid"
    args = [
        "parc.study",
        "experiment=demo",
        "seeds=0",
        "archs=pythia,mamba",
        "trainer.max_steps=8",
        "checkpoint.every=4",
        f"paths.root={demo_root}",
        f"out={out}",
        "train=40",
        "val=20",
        "test=0",
    ]
    first = run_cli(*args, timeout=1700)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in range(1, 6):
        assert f"parc.study [{stage}/5]" in first.stdout
    for arch in ("pythia", "mamba"):
        assert (out / f"{arch}-seed0-shard0" / "checkpoint-8" / "parc_checkpoint.json").is_file()
    analysis = out / "analysis"
    surprisal = pd.read_parquet(analysis / "surprisal.parquet")
    assert sorted(surprisal["step"].unique()) == [0, 4, 8] and set(surprisal["arch"]) == {"pythia", "mamba"}
    ngrams = pd.read_parquet(analysis / "ngrams.parquet")
    assert set(ngrams["order"]) == {1, 2, 3, 4, 5}
    assert set(ngrams["stimulus_id"]) == set(surprisal["stimulus_id"])
    correlations = pd.read_csv(analysis / "correlations.csv")
    raw = correlations[(correlations.split == "train") & (correlations.control == "none")]
    assert len(raw) == 2 * 3 * 6  # 5 orders and neg_num_tokens
    assert set(correlations.control) == {"none", "partial", "single_token"}
    regressions = pd.read_csv(analysis / "regressions.csv")
    # fastText vectors trained on the counted text: the paper's regression with context similarity, and without
    assert (analysis / "fasttext.bin").is_file()
    assert set(regressions.formula) == {
        "lm ~ gram1 + gram5",
        "lm ~ gram1 + gram5 + context_similarity + context_similarity_weighted",
    }
    assert len(regressions) == 2 * 3 * 2 and regressions["r2_train"].between(0, 1).all()
    for figure in ("phases", "r2", "agreement"):
        assert (analysis / f"{figure}.png").is_file() and (analysis / f"{figure}.pdf").is_file()
    parts = {p: p.stat().st_mtime_ns for p in analysis.rglob("parts/**/*.parquet")}
    tables = {name: (analysis / name).read_bytes() for name in ("ngrams.parquet", "correlations.csv")}

    second = run_cli(*args, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already trained") == 2 and "is up to date" in second.stdout
    assert "(6 already done)" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in parts} == parts
    assert all((analysis / name).read_bytes() == data for name, data in tables.items())


def test_bad_study_arguments_are_one_line_errors(tmp_path):
    for bad in (["seeds=a"], ["archs=gpt"], ["trainer.max_steps=8", "checkpoint.every=4", "steps=3"]):
        result = run_cli("parc.study", "experiment=demo", f"paths.root={tmp_path}", *bad)
        assert result.returncode == 2 and result.stderr.startswith("error: "), (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_mini_parc_preset_composes_and_scores_the_tail_of_its_schedule():
    """experiment=mini_parc: the issue's recipe (8k BPE, >= 2000 steps, cosine to a floor, 4-6 layers, each
    sequence seen once), and the study scores 0, the powers of two and every evenly spaced checkpoint after."""
    from parc.archs import hf_config
    from parc.config import compose
    from parc.store.steps import checkpoint_steps
    from parc.study.phases.pipeline import log_spaced_steps
    from parc.training.lr_neox import neox_lr
    from parc.training.runconfig import Plan, validate

    cfg = compose(["experiment=mini_parc", "arch=pythia"])
    validate(cfg)
    plan = Plan.build(cfg)
    t = cfg.trainer
    assert cfg.data.tokenizer_vocab_size == 8192 and plan.max_steps >= 2000
    assert t.lr_schedule == "neox" and 0 < t.min_lr < t.lr
    assert neox_lr(t.max_steps - 1, t.lr, t.min_lr, t.warmup_steps, t.max_steps) == t.min_lr  # a floor, not 0
    for arch in ("pythia", "mamba", "rwkv"):
        layers = hf_config(compose(["experiment=mini_parc", f"arch={arch}"]).arch, 8192).num_hidden_layers
        assert 4 <= layers <= 6, arch
    assert cfg.data.data_seed is not None  # the plays are shuffled within the shard, not read one after another
    saved = checkpoint_steps(cfg.checkpoint, plan.max_steps)
    steps = log_spaced_steps(saved, plan.max_steps)
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:] == [750, 1000, 1250, 1500, 1750, 2000]
    demo = compose(["experiment=demo"])
    assert log_spaced_steps(checkpoint_steps(demo.checkpoint, 200), 200) == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        150,
        175,
        200,
    ]
