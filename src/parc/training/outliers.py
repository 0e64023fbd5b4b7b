"""The seed outlier alarm: a run whose curve leaves the other seeds' band by more than k robust SDs.

At every step where at least `MIN_OTHERS` other runs of the same group (architecture and size) have a value,
a run's value v is compared with the others' median m and their robust standard deviation
s = 1.4826 x median(|others - m|) (the MAD, scaled to equal the SD of a normal distribution; the absolute
deviations pooled over `WINDOW` neighbouring steps on either side, and for few seeds scaled by the small-sample
factor that keeps it unbiased, `mad_consistency`): z = (v - m) / s.
A run is an outlier when |z| > k at some step; it is reported with its largest |z| and the first step that
crossed. Leave-one-out, so one broken seed cannot widen the band that judges it. Used by `parc.grid status`
(training loss from metrics.jsonl) and `parc.dynamics outliers` (loss and every evaluated metric).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Hashable, List, Mapping, Optional

import numpy as np

MIN_OTHERS = 3  # at least 4 seeds: with 2 others a persistent seed offset reads as z > 10 (seen on the demo grid)
DEFAULT_K = 5.0
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
    """Factor that turns the median of pooled |x - median(x)| of groups of n normal values (as seed_outliers
    pools them) into their SD: 1.4826 for large n, more for five seeds, whose sample median sits closer to
    them than the true centre does (and is one of them when n is odd). A fixed-seed simulation:
    deterministic, computed once per n."""
    draws = np.random.default_rng(12345).normal(size=(20000, n))
    return float(1.0 / np.median(np.abs(draws - np.median(draws, axis=1, keepdims=True))))


def robust_z(value: float, others: np.ndarray, spread: Optional[float] = None) -> float:
    """(value - median(others)) / robust SD; the SD from `others` alone unless a pooled `spread` is given."""
    median = float(np.median(others))
    if spread is None:
        spread = MAD_TO_SD * float(np.median(np.abs(others - median)))
    spread = max(spread, RELATIVE_FLOOR * abs(median), 1e-12)
    return (value - median) / spread


def seed_outliers(curves: Mapping[Hashable, Mapping[int, float]], k: float = DEFAULT_K,
                  window: int = WINDOW) -> Dict[Hashable, Outlier]:
    """run -> Outlier for every run of one group; `curves` maps run -> {step: value} (NaN / None skipped).

    The robust SD at a step pools the other runs' absolute deviations from their median over the `window`
    steps on either side (five seeds give a MAD too noisy to judge by at a single step; the spread of seeds
    changes slowly over training)."""
    clean = {run: {int(s): float(v) for s, v in curve.items() if v is not None and np.isfinite(v)}
             for run, curve in curves.items()}
    steps = sorted({s for curve in clean.values() for s in curve})
    result: Dict[Hashable, Outlier] = {}
    for run, curve in clean.items():
        others_at = {}
        for step in steps:
            others = np.array([c[step] for r, c in clean.items() if r != run and step in c])
            if len(others) >= MIN_OTHERS:
                others_at[step] = others
        known = [s for s in steps if s in others_at]
        deviations = [np.abs(others_at[s] - np.median(others_at[s])) for s in known]
        best, best_step, first, over, compared = 0.0, -1, None, 0, 0
        for j, step in enumerate(known):
            if step not in curve:
                continue
            pooled = np.concatenate(deviations[max(0, j - window):j + window + 1])
            spread = mad_consistency(len(others_at[step])) * float(np.median(pooled))
            z = robust_z(curve[step], others_at[step], spread)
            compared += 1
            if abs(z) > abs(best):
                best, best_step = z, step
            if abs(z) > k:
                over += 1
                first = step if first is None else first
        result[run] = Outlier(run, best, best_step, first, over, compared)
    return result


def grouped_outliers(curves: Mapping[Hashable, Mapping[int, float]], group_of: Mapping[Hashable, Hashable],
                     k: float = DEFAULT_K) -> Dict[Hashable, Outlier]:
    """seed_outliers within each group (e.g. architecture): runs are only compared with their own kind."""
    groups: Dict[Hashable, List[Hashable]] = {}
    for run in curves:
        groups.setdefault(group_of[run], []).append(run)
    found: Dict[Hashable, Outlier] = {}
    for members in groups.values():
        found.update(seed_outliers({run: curves[run] for run in members}, k))
    return found


def loss_curve(path) -> Dict[int, float]:
    """step -> training loss from a metrics.jsonl that may be being written (an unfinished row is skipped)."""
    import json

    curve: Dict[int, float] = {}
    try:
        text = open(path, "rb").read()
    except OSError:
        return curve
    for line in text.split(b"\n")[:-1]:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and isinstance(row.get("loss"), (int, float)):
            curve[row["step"]] = float(row["loss"])
    return curve
