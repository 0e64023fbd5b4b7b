"""Which steps get a checkpoint (Parc's every-10, Pythia's log-spaced, a list, every N) and the LR schedule."""

from __future__ import annotations

from typing import List


def checkpoint_steps(ckpt, max_steps: int) -> List[int]:
    """Sorted checkpoint steps; step 0 (the initialisation) and the final step are always included."""
    if ckpt.every is not None:
        steps = set(range(0, max_steps + 1, ckpt.every))
    elif ckpt.schedule == "pythia":
        steps = pythia_steps(max_steps, ckpt.interval)
    elif ckpt.schedule == "list":
        steps = set(ckpt.steps)
    else:  # parc, or "every" with the group's interval
        steps = set(range(0, max_steps + 1, ckpt.interval or 10))
    steps |= {0, max_steps}
    return sorted(s for s in steps if 0 <= s <= max_steps)


def pythia_steps(max_steps: int, interval=None, pythia_total: int = 143_000) -> set:
    """Pythia's 154: step 0, log-spaced 1..512, then every 1000 of 143000 steps (scaled to this run unless given)."""
    interval = interval or max(1, round(max_steps * 1000 / pythia_total))
    log_spaced = {2**i for i in range(10) if 2**i <= min(512, max_steps)}
    return {0} | log_spaced | set(range(interval, max_steps + 1, interval))
