"""The memorisation profile of every run, its seed bands and its correlation across seeds and architectures.

Per run (architecture x seed) and family of units: ATT(g, t) cells with unit-bootstrap bands (did.py) and
their instantaneous / persistent / residual summaries. `memorisation` is -ATT for outcomes where memorising
lowers the value (nll, as Lesci et al.) and ATT otherwise. Across seeds: the mean of each cell and summary
with a percentile band from Parc's bootstrap over seeds (stats.bootstrap_ci). Correlation: Pearson r of two
runs' memorisation over the post-treatment cells (t >= g) they share.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from parc.study.memorization.did import att_gt, cell_bands, summaries, wide
from parc.study.memorization.panel import LOWER_IS_MORE, RUN, check_outcome, cohorts, family, runs
from parc.study.stats import bootstrap_ci


def profile_tables(frame, units: str = "train", outcome: str = "nll", control: str = "never", samples: int = 200):
    """(cells, summaries): one row per run x cell, one row per run x summary, both with `memorisation`."""
    import pandas as pd

    check_outcome(frame, outcome)
    rows = family(frame, units)
    sign = -1.0 if outcome in LOWER_IS_MORE else 1.0
    all_cells, all_summaries = [], []
    for number, run in enumerate(runs(rows)):
        mine = rows[(rows["arch"] == run[0]) & (rows["seed"] == run[1])].copy()
        steps = np.sort(mine["step"].unique())
        mine["cohort"] = np.where(mine["treated"], cohorts(mine["treat_step"], steps), np.nan)
        mine = mine[~(mine["treated"] & mine["cohort"].isna())]  # trained after the last checkpoint
        cells, draws = att_gt(wide(mine, outcome), control, samples, seed=number)
        identity = dict(zip(RUN, run), units=units, outcome=outcome, control=control)
        all_cells.append(cell_bands(cells, draws).assign(**identity))
        all_summaries.append(summaries(cells, draws).assign(**identity))
    cells, summary = pd.concat(all_cells, ignore_index=True), pd.concat(all_summaries, ignore_index=True)
    for table in (cells, summary):
        table["memorisation"] = sign * table["att"]
        table["memorisation_low"], table["memorisation_high"] = (
            np.where(sign > 0, table["low"], -table["high"]),
            np.where(sign > 0, table["high"], -table["low"]),
        )
    return cells, summary


def seed_bootstrap(table, by, value: str = "memorisation", samples: int = 2000):
    """Per group of `by` (over its rows, one per seed): the mean, a percentile band from resampling seeds."""
    import pandas as pd

    rows = []
    for key, group in table.groupby(list(by), sort=True):
        values = group[value].dropna().to_numpy(float)
        if not len(values):
            continue
        low, high = bootstrap_ci(lambda rng, v=values: float(rng.choice(v, len(v)).mean()), samples=samples)
        rows.append(
            {**dict(zip(by, key)), "mean": float(values.mean()), "low": low, "high": high, "n_seeds": len(values)}
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n_seeds"])


def profile_correlation(cells, value: str = "memorisation"):
    """Pearson r of every pair of runs' post-treatment cells; pair = seeds (same architecture) or archs."""
    import pandas as pd

    post = cells[cells["event"] >= 0]
    vectors = post.pivot_table(index=["g", "t"], columns=RUN, values=value)
    rows = []
    for a, b in combinations(vectors.columns, 2):
        both = vectors[[a, b]].dropna()
        r = float(np.corrcoef(both[a], both[b])[0, 1]) if len(both) > 2 else np.nan
        rows.append(
            {"arch_a": a[0], "seed_a": a[1], "arch_b": b[0], "seed_b": b[1], "r": r, "n_cells": len(both)}
            | {"pair": "seeds" if a[0] == b[0] else "archs"}
        )
    return pd.DataFrame(rows, columns=["arch_a", "seed_a", "arch_b", "seed_b", "pair", "r", "n_cells"])
