"""The seed outlier alarm: a run whose curve leaves the other seeds' band by more than k robust SDs.

At every step where at least `MIN_OTHERS` other runs of the same group (architecture and size) have a value,
a run's value v is compared with the others' median m and the seeds' robust standard deviation s (the MAD of
all runs of the group around their median, scaled to equal the SD of a normal distribution: 1.4826 for many
seeds, the small-sample factor `mad_consistency` for few; absolute deviations pooled over `WINDOW`
neighbouring steps on either side): z = (v - m) / s.
A run is an outlier when |z| > k at some step; it is reported with its largest |z| and the first step that
crossed. The median and the MAD break down only at half the runs, so one broken seed cannot widen the band that judges it. Used by `parc.grid status`
(training loss from metrics.jsonl) and `parc.dynamics outliers` (loss and every evaluated metric).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Hashable, List, Mapping, Optional

import numpy as np

MIN_OTHERS = 3  # at least 4 seeds: with 2 others a persistent seed offset reads as z > 10 (seen on the demo grid)
DEFAULT_K = 6.0  # per step and run: a 6-seed, 100k-step loss log stays quiet by chance (normal tail 2e-9)
MAD_TO_SD = 1.4826
WINDOW = 10  # steps on either side whose spread is pooled into a step's robust SD
RELATIVE_FLOOR = 1e-6  # a band of identical values still has this width (relative to |median|)


@dataclass
class Outlier:
    run: Hashable
    max_z: float  # signed z of the largest |z|
    at_step: int  # step of the largest |z|
    first_step: Optional[int]  # first step with |z| > k (None: never)
    steps_over: int  # how many steps had |z| > k
    steps_compared: int

    @property
    def flagged(self) -> bool:
        return self.first_step is not None

    def describe(self) -> str:
        if not self.flagged:
            return ""
        return f"z={self.max_z:+.1f} @ {self.at_step} ({self.steps_over}/{self.steps_compared} steps)"


@functools.lru_cache(maxsize=64)
def mad_consistency(n: int) -> float:
    """Factor that turns the median of pooled |x - median(x)| over groups of n normal values (the seeds of one
    step, as seed_outliers pools them) into the SD of what z divides: a run's value minus the median of the
    n - 1 others. 1.4826 x sqrt(1 + pi / (2 (n - 1))) for many seeds; more for few, whose sample median sits
    closer to them than the true centre does. A fixed-seed simulation: deterministic, computed once per n."""
    draws = np.random.default_rng(12345).normal(size=(40000, n))
    spread = np.median(np.abs(draws - np.median(draws, axis=1, keepdims=True)))
    return float(np.std(draws[:, 0] - np.median(draws[:, 1:], axis=1)) / spread)


def robust_z(value: float, others: np.ndarray, spread: Optional[float] = None) -> float:
    """(value - median(others)) / robust SD; the SD from `others` alone unless a pooled `spread` is given."""
    median = float(np.median(others))
    if spread is None:
        spread = MAD_TO_SD * float(np.median(np.abs(others - median)))
    spread = max(spread, RELATIVE_FLOOR * abs(median), 1e-12)
    return (value - median) / spread


def seed_outliers(
    curves: Mapping[Hashable, Mapping[int, float]], k: float = DEFAULT_K, window: int = WINDOW
) -> Dict[Hashable, Outlier]:
    """run -> Outlier for every run of one group; `curves` maps run -> {step: value} (NaN / None skipped).

    Centre: the median of the other runs at the step. Spread: the MAD of all runs around their median,
    pooled over the `window` steps on either side (five seeds give a MAD too noisy to judge by at one step,
    and the spread of seeds changes slowly), scaled by `mad_consistency`; the MAD's 50 % breakdown keeps one
    broken run from widening (or, when it sits among the others, from distorting) the band."""
    clean = {
        run: {int(s): float(v) for s, v in curve.items() if v is not None and np.isfinite(v)}
        for run, curve in curves.items()
    }
    steps = sorted({s for curve in clean.values() for s in curve})
    at_step = {s: np.array([c[s] for c in clean.values() if s in c]) for s in steps}
    usable = [s for s in steps if len(at_step[s]) > MIN_OTHERS]
    deviations = [np.abs(at_step[s] - np.median(at_step[s])) for s in usable]
    spread = {}
    for j, step in enumerate(usable):
        pooled = np.concatenate(deviations[max(0, j - window) : j + window + 1])
        spread[step] = mad_consistency(len(at_step[step])) * float(np.median(pooled))
    result: Dict[Hashable, Outlier] = {}
    for run, curve in clean.items():
        best, best_step, first, over, compared = 0.0, -1, None, 0, 0
        for step in usable:
            if step not in curve:
                continue
            others = np.array([c[step] for r, c in clean.items() if r != run and step in c])
            z = robust_z(curve[step], others, spread[step])
            compared += 1
            if abs(z) > abs(best):
                best, best_step = z, step
            if abs(z) > k:
                over += 1
                first = step if first is None else first
        result[run] = Outlier(run, best, best_step, first, over, compared)
    return result


def grouped_outliers(
    curves: Mapping[Hashable, Mapping[int, float]], group_of: Mapping[Hashable, Hashable], k: float = DEFAULT_K
) -> Dict[Hashable, Outlier]:
    """seed_outliers within each group (e.g. architecture): runs are only compared with their own kind."""
    groups: Dict[Hashable, List[Hashable]] = {}
    for run in curves:
        groups.setdefault(group_of[run], []).append(run)
    found: Dict[Hashable, Outlier] = {}
    for members in groups.values():
        found.update(seed_outliers({run: curves[run] for run in members}, k))
    return found
