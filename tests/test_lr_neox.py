"""The warmup as GPT-NeoX takes it (a fraction of the run) and no negative learning rate: Parc's schedule against
NeoX v1.0's AnnealingLR written out here from its source, at 3, 1430 and 143000 steps; a warmup longer than the
run refused; a 3-step experiment=pythia run (the defect: -0.000998 at every step) trains with NeoX's rates."""

from __future__ import annotations

import math
import re

import pytest
import torch

from parc.config import compose
from parc.errors import ParcError
from parc.store.metricsfile import read_metrics
from parc.training.optim import build_scheduler
from parc.training.runconfig import validate

from conftest import run_cli_cases


def annealing_lr(num_iters, start_lr, min_lr, warmup, train_iters):
    """GPT-NeoX v1.0: training.py get_learning_rate_scheduler (warmup_iter = neox_args.warmup * num_iters,
    lr-decay-iters = train-iters) and learning_rates.py AnnealingLR.get_lr, decay_style cosine."""
    warmup_iter, end_iter = warmup * train_iters, train_iters
    num_iters_ = min(num_iters, end_iter - warmup_iter)
    if warmup_iter > 0 and num_iters <= warmup_iter:
        return float(start_lr) * num_iters_ / warmup_iter
    num_iters_ = num_iters_ - warmup_iter
    lr = start_lr / 2.0 * (math.cos(math.pi * num_iters_ / end_iter) + 1)
    return max(lr, min_lr)


def rates(cfg):
    """lr(n) for n = 0 .. max_steps from the scheduler the trainer builds (update k uses lr(k - 1))."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.trainer.lr)
    factor = build_scheduler(optimizer, cfg.trainer).lr_lambdas[0]
    lr0, steps = cfg.trainer.lr, cfg.trainer.max_steps  # read once: a DictConfig read costs microseconds
    return [lr0 * factor(n) for n in range(steps + 1)]


@pytest.mark.parametrize("steps", [3, 1430, 143000])
def test_pythia_schedule_is_neox_annealing_lr_with_a_warmup_fraction(steps):
    cfg = compose(["experiment=pythia", "arch.size=160m", f"trainer.max_steps={steps}"])
    validate(cfg)
    assert (cfg.trainer.warmup_steps, cfg.trainer.warmup_fraction) == (None, 0.01)
    ours = rates(cfg)
    reference = [annealing_lr(n, 6e-4, 6e-5, 0.01, steps) for n in range(steps + 1)]
    assert len(ours) == len(reference)
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-18) for a, b in zip(ours, reference))  # every step
    assert min(ours) >= 0 and ours[0] == 0.0
    peak = max(ours)
    assert peak == pytest.approx(6e-4, rel=0.01) if steps > 3 else 6e-5 < peak < 6e-4
    if steps == 143000:  # the published points: warmup of 1430 steps, the floor for the last ~3 %
        assert (ours[715], ours[1430], ours[140000]) == pytest.approx((3e-4, 6e-4, 6e-5), rel=1e-9)


def test_a_three_step_schedule_is_positive_where_the_fixed_warmup_was_negative():
    cfg = compose(["experiment=pythia", "arch.size=14m", "trainer.max_steps=3"])
    ours = rates(cfg)
    assert ours[1:3] == pytest.approx(
        [5e-4 * (math.cos(math.pi * 0.97 / 3) + 1), 5e-4 * (math.cos(math.pi * 1.97 / 3) + 1)]
    )
    old = annealing_lr(1, 1e-3, 1e-4, 1430 / 3, 3)  # the former fixed 1430-step warmup: m = 3 - 1430
    assert old == pytest.approx(-0.000998, rel=1e-3)  # the defect as reported
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.trainer.lr)
    scheduler = build_scheduler(optimizer, cfg.trainer)
    for step in range(3):  # the real scheduler, stepped as the trainer steps it
        assert scheduler.get_last_lr()[0] == pytest.approx(ours[step], rel=1e-12, abs=1e-18) and ours[step] >= 0
        optimizer.step()
        scheduler.step()


def test_a_warmup_fraction_gives_transformers_schedules_the_rounded_steps():
    by_fraction = compose(["experiment=demo", "trainer.warmup_steps=null", "trainer.warmup_fraction=0.1"])
    by_steps = compose(["experiment=demo", f"trainer.warmup_steps={round(0.1 * by_fraction.trainer.max_steps)}"])
    assert rates(by_fraction) == rates(by_steps)
    assert rates(by_fraction)[by_steps.trainer.warmup_steps] == pytest.approx(by_steps.trainer.lr)  # the peak


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["experiment=demo", "trainer.lr_schedule=neox", "trainer.warmup_steps=500", "trainer.max_steps=100"],
            "trainer.warmup_steps=500 is not shorter than trainer.max_steps=100: .* shorten it .* "
            "trainer.warmup_fraction=0.01",
        ),
        (
            [
                "experiment=pythia",
                "trainer.warmup_fraction=null",
                "trainer.warmup_steps=1430",
                "trainer.max_steps=1430",
            ],
            "is not shorter than trainer.max_steps=1430: NeoX's schedule .* zero or negative",
        ),
        (["experiment=pythia", "trainer.warmup_steps=2"], "both set the warmup: give one"),
        (["experiment=pythia", "trainer.warmup_fraction=1.0"], r"must lie in \[0, 1\)"),
        (["experiment=demo", "trainer.warmup_steps=null"], "both null"),
        (["experiment=demo", "trainer.warmup_steps=-1"], "must not be negative"),
    ],
)
def test_warmups_the_run_cannot_hold_are_refused(overrides, message):
    with pytest.raises(ParcError, match=message):
        validate(compose(overrides))
    cfg = compose(overrides)
    with pytest.raises(ParcError, match=message):  # the scheduler refuses it too (a caller that skips validate)
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), cfg.trainer)


def test_transformers_schedules_longer_warmups_only_warm_up():
    """A smoke run shorter than its preset's warmup (experiment=demo trainer.max_steps=8: warmup 20) rises all along."""
    for schedule in ("cosine", "linear", "constant"):
        cfg = compose(["experiment=demo", f"trainer.lr_schedule={schedule}", "trainer.max_steps=8"])
        validate(cfg)
        warmup = cfg.trainer.warmup_steps
        assert rates(cfg) == pytest.approx([cfg.trainer.lr * n / warmup for n in range(9)])


def test_three_step_pythia_dry_run_and_run_have_no_negative_lr_and_a_long_warmup_exits_2(demo_root, tmp_path):
    """The defect's command, as a dry run and as a real 3-step run of the 14m preset on the demo corpus."""
    out = tmp_path / "run"
    short = ["experiment=pythia", "arch.size=14m", "trainer.max_steps=3", "data=demo", f"paths.root={demo_root}"]
    dry, trained, refused = run_cli_cases(
        "parc.train",
        [
            [*short, "dry_run=true"],
            [
                *short,
                f"output_dir={out}",
                "trainer.precision=fp32",
                "trainer.global_batch_size=4",
                "trainer.micro_batch_size=4",
                "trainer.progress=false",
                "checkpoint.save_train_state=false",
            ],
            [
                "experiment=demo",
                f"paths.root={demo_root}",
                "trainer.lr_schedule=neox",
                "trainer.warmup_steps=50",
                "trainer.max_steps=10",
                "dry_run=true",
            ],
        ],
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    line = next(ln for ln in dry.stdout.splitlines() if ln.strip().startswith("learning rate"))
    expected = [annealing_lr(n, 1e-3, 1e-4, 0.01, 3) for n in range(3)]
    assert "warmup 0.03 steps (0.01 x 3)" in line and f"last {expected[2]:.4g}" in line and line.endswith("lowest 0")
    assert min(float(x) for x in re.findall(r"-?[\d.]+(?:e-?\d+)?", line.split("lr at update")[1])) >= 0
    assert trained.returncode == 0, trained.stderr[-3000:]
    logged = [(r["step"], r["lr"]) for r in read_metrics(out / "metrics.jsonl")]
    assert [s for s, _ in logged] == [1, 2, 3]
    assert [lr for _, lr in logged] == pytest.approx(expected, rel=1e-9, abs=1e-18)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: trainer.warmup_steps=50 is not shorter than trainer.max_steps=10: "
        "NeoX's schedule caps the step at max_steps - warmup_steps, so its LR would be "
        "zero or negative: shorten it (trainer.warmup_steps=1 is a tenth) or give it as a fraction of the run "
        "(trainer.warmup_steps=null trainer.warmup_fraction=0.01, GPT-NeoX's way)"
    )
