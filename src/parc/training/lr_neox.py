"""GPT-NeoX v1.0's learning-rate schedule (`megatron/learning_rates.py` AnnealingLR, decay_style cosine).

With W = trainer.warmup_steps, T = trainer.max_steps (NeoX's lr-decay-iters) and m = min(n, T - W):
    lr(n) = lr0 * m / W                                           for n <= W
    lr(n) = max(lr0 / 2 * (1 + cos(pi * (m - W) / T)), min_lr)     after
Note the cosine runs over T, not T - W, and m is capped at T - W: it never reaches 0, and Pythia's
143000-step runs sit on the min_lr floor for their last ~3 %. As with transformers' schedules, update k
(1-based) uses lr(k - 1): NeoX's scheduler starts at n = 0 and steps after each optimizer step.
"""

from __future__ import annotations

import math

import torch


def neox_lr(n: int, lr0: float, min_lr: float, warmup: int, total: int) -> float:
    capped = min(n, total - warmup)
    if warmup > 0 and n <= warmup:
        return lr0 * capped / warmup
    return max(lr0 / 2.0 * (math.cos(math.pi * (capped - warmup) / total) + 1.0), min_lr)


def neox_scheduler(optimizer: torch.optim.Optimizer, trainer_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    lr0, min_lr, warmup, total = trainer_cfg.lr, trainer_cfg.min_lr, trainer_cfg.warmup_steps, trainer_cfg.max_steps

    def factor(n: int) -> float:  # LambdaLR multiplies the base lr (= lr0) by this
        return neox_lr(n, lr0, min_lr, warmup, total) / lr0 if lr0 else 0.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
