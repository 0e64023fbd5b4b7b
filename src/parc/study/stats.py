"""Aggregation over seeds: the Parc paper's mean with a 95 % t-interval, PolyPythias' median with an
interquartile band, and a percentile bootstrap over seeds (and examples) for differences."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

BANDS = ("t95", "iqr")


def band_of(values: Sequence[float], band: str = "t95") -> tuple:
    """(centre, low, high, n) of one group. t95: mean -+ t_{.975,n-1} s / sqrt(n); one value gives a zero band."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return (np.nan, np.nan, np.nan, 0)
    if band == "t95":
        mean = float(values.mean())
        if n == 1:
            return (mean, mean, mean, 1)
        from scipy import stats

        half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
        return (mean, mean - half, mean + half, n)
    if band == "iqr":
        q25, median, q75 = np.percentile(values, [25, 50, 75])
        return (float(median), float(q25), float(q75), n)
    raise ValueError(f"band must be one of {BANDS}, not {band!r}")


def seed_bands(frame, by: Sequence[str], value: str = "value", band: str = "t95"):
    """One row per group of `by` with columns centre, low, high, n_seeds (over the rows of the group)."""
    import pandas as pd

    rows = []
    for key, group in frame.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        centre, low, high, n = band_of(group[value].to_numpy(), band)
        rows.append({**dict(zip(by, key)), "centre": centre, "low": low, "high": high, "n_seeds": n})
    return pd.DataFrame(rows, columns=[*by, "centre", "low", "high", "n_seeds"])


def bootstrap_ci(
    statistic: Callable[[np.random.Generator], float], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple:
    """Percentile interval of `statistic(rng)` over `samples` resamples drawn by the statistic itself
    (so it can resample seeds, or seeds then examples, as MultiBERTs' Multi-Bootstrap does)."""
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng) for _ in range(samples)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)
