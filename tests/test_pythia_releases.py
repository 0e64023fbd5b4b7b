"""Pythia's other published forms: the 20 branches of the raw GPT-NeoX checkpoints (checkpoint=neox_raw) and the
first release (experiment=pythia_v0: 4M-token batches for 160m/410m/1.4b, a floor of 0 for 6.9b/12b, checkpoints
every 1000 steps' worth of tokens, the old size names), checked against the numbers the model cards state."""

from __future__ import annotations

import pytest
from test_pythia import PYTHIA  # the cards' total parameters, one table

from parc import archs
from parc.config import compose
from parc.store.steps import checkpoint_steps
from parc.training.runconfig import Plan, validate

from conftest import run_cli_cases

# The model card of EleutherAI/neox-ckpt-pythia-12b-deduped: its branches.
NEOX_RAW = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 143000]
# The Pythia cards' "Naming convention" table: old suffix -> current suffix, and the total parameters.
OLD_NAMES = {
    "19m": "70m",
    "125m": "160m",
    "350m": "410m",
    "800m": "1b",
    "1.3b": "1.4b",
    "2.7b": "2.8b",
    "6.7b": "6.9b",
    "13b": "12b",
}


@pytest.mark.parametrize(
    "overrides", [["checkpoint=neox_raw", "trainer.max_steps=143000"], ["experiment=pythia", "checkpoint=neox_raw"]]
)
def test_neox_raw_at_143000_steps_is_the_twenty_published_branches(overrides):
    cfg = compose(overrides)
    validate(cfg)
    assert checkpoint_steps(cfg.checkpoint, cfg.trainer.max_steps) == NEOX_RAW and len(NEOX_RAW) == 20


def test_neox_raw_scales_to_a_shorter_run_as_pythia_does():
    cfg = compose(["checkpoint=neox_raw"])  # Parc's 4000 steps: the doubling unit is 4000 x 1000 / 143000 = 27.97
    steps = checkpoint_steps(cfg.checkpoint, 4000)
    assert steps == [0, 1, 2, 4, 8, 16, 28, 32, 56, 64, 112, 128, 224, 256, 448, 512, 895, 1790, 3580, 4000]
    pythia = checkpoint_steps(compose(["checkpoint=pythia"]).checkpoint, 4000)
    assert set(steps) - {4000} <= set(pythia) | {round(4000 * s / 143000) for s in NEOX_RAW[11:]}
    assert checkpoint_steps(cfg.checkpoint, 3) == [0, 1, 2, 3]
    unscaled = compose(["experiment=pythia", "checkpoint=neox_raw", "trainer.max_steps=5000"])  # interval 1000
    assert checkpoint_steps(unscaled.checkpoint, 5000) == NEOX_RAW[:13] + [4000, 5000]


@pytest.mark.parametrize("size", ["125m", "410m", "1.3b"])
def test_v0_trains_160m_410m_and_1_4b_on_4m_token_batches(size):
    cfg = compose(["experiment=pythia_v0", f"arch.size={size}"])
    validate(cfg)
    plan = Plan.build(cfg)
    assert plan.tokens_per_step == 2048 * 2048 == 4_194_304 and plan.max_steps == 71_500
    assert plan.total_tokens == 299_892_736_000  # the same tokens as every Pythia model (the cards' number)
    assert plan.checkpoint_steps == list(range(0, 71_501, 500))  # every 2,097,152,000 tokens, as the current suite
    assert cfg.trainer.min_lr == pytest.approx(cfg.trainer.lr / 10)


@pytest.mark.parametrize("size,floor", [("6.7b", 0.0), ("13b", 0.0), ("2.7b", 1.6e-5), ("800m", 2.5e-5), ("19m", 1e-4)])
def test_v0_floors_and_2m_batches_of_the_other_sizes(size, floor):
    cfg = compose(["experiment=pythia_v0", f"arch.size={size}"])
    validate(cfg)
    plan = Plan.build(cfg)
    assert cfg.trainer.min_lr == floor and cfg.arch.size == OLD_NAMES[size]
    assert (plan.global_batch_size, plan.max_steps) == (1024, 143_000)
    assert plan.checkpoint_steps == list(range(0, 143_001, 1000))  # no log-spaced checkpoints


def test_current_release_keeps_its_floor():
    assert compose(["experiment=pythia", "arch.size=6.9b"]).trainer.min_lr == 1.2e-5


@pytest.mark.parametrize("old,current", sorted(OLD_NAMES.items()))
def test_old_size_names_are_the_current_models(old, current):
    """Under experiment=pythia too; the resolved preset has the card's total parameter count for the old name."""
    cfg = compose(["experiment=pythia", f"arch.size={old.upper()}"])
    assert cfg.arch.size == current and cfg.output_dir.endswith(f"pythia-{current}-seed1234")
    model = archs.build_model(cfg.arch, 50277, seed=0, device="meta")
    assert archs.count_parameters(model) == PYTHIA[current]


def test_v0_dry_run_shows_the_v0_numbers():
    v0, big, current = run_cli_cases(
        "parc.train",
        [
            ["experiment=pythia_v0", "arch.size=125m", "dry_run=true"],
            ["experiment=pythia_v0", "arch.size=6.7b", "dry_run=true"],
            ["experiment=pythia", "arch.size=160m", "checkpoint=neox_raw", "dry_run=true"],
        ],
    )
    for result in (v0, big, current):
        assert result.returncode == 0, result.stderr[-2000:]
    lines = {ln[:19].strip(): ln[19:].strip() for ln in v0.stdout.splitlines()[1:]}
    assert lines["architecture"] == "pythia (160m)" and lines["parameters"] == str(PYTHIA["160m"])
    assert (lines["global batch"], lines["tokens per step"], lines["steps"]) == ("2048", "4194304", "71500")
    assert lines["learning rate"].startswith("neox, floor 6e-05, warmup 715 steps (0.01 x 71500)")
    assert lines["checkpoint steps"] == "144 steps: 0, 500, 1000, 1500, 2000, 2500, 3000, 3500 ... 71000, 71500"
    assert lines["output dir"].endswith("runs/pythia_v0/pythia-160m-seed1234")
    assert "architecture       pythia (6.9b)" in big.stdout and "neox, floor 0, warmup 1430 steps" in big.stdout
    assert "checkpoint steps   20 steps: 0, 1, 2, 4, 8, 16, 32, 64 ... 128000, 143000" in current.stdout
