"""Which steps get a checkpoint (Parc's every-10, Pythia's log-spaced, the raw NeoX branches, a list, every N)."""

from __future__ import annotations

from typing import List

PYTHIA_TOTAL = 143_000  # Pythia's steps; its evenly spaced checkpoints are every 1000 of them


def checkpoint_steps(ckpt, max_steps: int) -> List[int]:
    """Sorted checkpoint steps; step 0 (the initialisation) and the final step are always included."""
    if ckpt.every is not None:
        steps = set(range(0, max_steps + 1, ckpt.every))
    elif ckpt.schedule == "pythia":
        steps = pythia_steps(max_steps, ckpt.interval)
    elif ckpt.schedule == "neox_raw":
        steps = neox_raw_steps(max_steps, ckpt.interval)
    elif ckpt.schedule == "list":
        steps = set(ckpt.steps)
    else:  # parc, or "every" with the group's interval
        steps = set(range(0, max_steps + 1, ckpt.interval or 10))
    steps |= {0, max_steps}
    return sorted(s for s in steps if 0 <= s <= max_steps)


def log_spaced(max_steps: int) -> set:
    """Pythia's early checkpoints: 1, 2, 4 .. 512 (those within the run), never scaled."""
    return {2**i for i in range(10) if 2**i <= min(512, max_steps)}


def pythia_steps(max_steps: int, interval=None, pythia_total: int = PYTHIA_TOTAL) -> set:
    """Pythia's 154: step 0, log-spaced 1..512, then every 1000 of 143000 steps (scaled to this run unless given)."""
    interval = interval or max(1, round(max_steps * 1000 / pythia_total))
    return {0} | log_spaced(max_steps) | set(range(interval, max_steps + 1, interval))


def neox_raw_steps(max_steps: int, interval=None, pythia_total: int = PYTHIA_TOTAL) -> set:
    """The 20 branches of EleutherAI's raw GPT-NeoX checkpoints (neox-ckpt-pythia-*): step 0, log-spaced 1..512,
    1000, 2000, 4000 .. 128000 (doubling) and the last step. The doubling unit is `interval` if given, else 1000
    of 143000 steps scaled to this run, as Pythia's; each of its multiples is rounded to a whole step."""
    unit = interval or max_steps * 1000 / pythia_total
    doubling = {round(unit * 2**i) for i in range(8)}
    return {0} | log_spaced(max_steps) | {s for s in doubling if 0 < s <= max_steps} | {max_steps}
