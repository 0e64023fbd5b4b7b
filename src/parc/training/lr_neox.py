"""GPT-NeoX v1.0's learning-rate schedule (`megatron/learning_rates.py` AnnealingLR, decay_style cosine), and
the warmup length every schedule uses (`warmup_iters`: steps, or NeoX's fraction of the run).

With W the warmup (NeoX: `warmup_iter = warmup x train-iters`, a float; Parc: trainer.warmup_fraction x
trainer.max_steps, or trainer.warmup_steps), T = trainer.max_steps (NeoX's lr-decay-iters) and m = min(n, T - W):
    lr(n) = lr0 * m / W                                           for n <= W
    lr(n) = max(lr0 / 2 * (1 + cos(pi * (m - W) / T)), min_lr)     after
Note the cosine runs over T, not T - W, and m is capped at T - W: it never reaches 0, and Pythia's
143000-step runs sit on the min_lr floor for their last ~3 %. A warmup as long as the run or longer would make
m = T - W <= 0 (a zero or negative LR): `warmup_iters` refuses it, and a fraction (< 1) never reaches it. As with
transformers' schedules, update k (1-based) uses lr(k - 1): NeoX's scheduler starts at n = 0 and steps after
each optimizer step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from parc.errors import ParcError

if TYPE_CHECKING:  # torch is imported where the scheduler is built: validation stays quick
    import torch


def warmup_iters(trainer_cfg) -> float:
    """The warmup in steps: trainer.warmup_fraction x trainer.max_steps (a float, as NeoX), or trainer.warmup_steps.
    Refuses both or neither, a fraction outside [0, 1), and a warmup longer than the run (for NeoX's schedule,
    one as long as the run: its LR would stay 0)."""
    t = trainer_cfg
    steps, fraction = t.warmup_steps, t.get("warmup_fraction")
    if steps is not None and fraction is not None:
        raise ParcError(
            f"trainer.warmup_steps={steps} and trainer.warmup_fraction={fraction} both set the warmup: "
            f"give one (trainer.warmup_fraction=null to count steps, trainer.warmup_steps=null for a "
            f"fraction of trainer.max_steps)"
        )
    if fraction is not None:
        if not 0 <= fraction < 1:
            raise ParcError(
                f"trainer.warmup_fraction={fraction} must lie in [0, 1): the share of trainer.max_steps "
                f"spent warming up (Pythia: 0.01)"
            )
        return fraction * t.max_steps
    if steps is None:
        raise ParcError(
            "trainer.warmup_steps and trainer.warmup_fraction are both null: give one "
            "(e.g. trainer.warmup_steps=100 or trainer.warmup_fraction=0.01)"
        )
    if steps < 0:
        raise ParcError(f"trainer.warmup_steps={steps} must not be negative")
    fix = (
        f"shorten it (trainer.warmup_steps={t.max_steps // 10} is a tenth) or give it as a fraction of the run "
        f"(trainer.warmup_steps=null trainer.warmup_fraction=0.01, GPT-NeoX's way)"
    )
    # transformers' schedules stay positive with any warmup (a run shorter than its warmup only warms up: smoke
    # runs of a preset); NeoX's caps the step at max_steps - warmup, which must stay positive.
    if t.lr_schedule == "neox" and steps >= t.max_steps:
        raise ParcError(
            f"trainer.warmup_steps={steps} is not shorter than trainer.max_steps={t.max_steps}: NeoX's "
            f"schedule caps the step at max_steps - warmup_steps, so its LR would be zero or negative: {fix}"
        )
    return float(steps)


def neox_lr(n: int, lr0: float, min_lr: float, warmup: float, total: int) -> float:
    capped = min(n, total - warmup)
    if warmup > 0 and n <= warmup:
        return lr0 * capped / warmup
    return max(lr0 / 2.0 * (math.cos(math.pi * (capped - warmup) / total) + 1.0), min_lr)


def neox_scheduler(optimizer: torch.optim.Optimizer, trainer_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    import torch

    lr0, min_lr, total = trainer_cfg.lr, trainer_cfg.min_lr, trainer_cfg.max_steps
    warmup = warmup_iters(trainer_cfg)

    def factor(n: int) -> float:  # LambdaLR multiplies the base lr (= lr0) by this
        return neox_lr(n, lr0, min_lr, warmup, total) / lr0 if lr0 else 0.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
