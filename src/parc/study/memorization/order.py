"""Pythia's training-order test with test statistics: memorized counts per block of training positions.

Units: the training sequences of one run at one checkpoint (the last by default), sorted by training-order
position (`position`, else `example_id`) and cut into blocks of `block` consecutive scored sequences (512, as
Pythia; the last partial block is dropped). When every position is scored a block is Pythia's block of
training positions; a sampled panel gives blocks of equal size. Event: score32 == 1. Under "order does not
matter" the counts are i.i.d. Poisson (Pythia's Q-Q null) and events uniform over positions. Tests:
- dispersion: D = sum (c - mean)^2 / mean ~ chi2(n - 1); p for over-dispersion (upper tail), which a trend causes;
- trend: Poisson GLM of count on block index (statsmodels), Wald p of the slope; `trend` = the fitted relative
  change from the first block to the last;
- KS: event positions (as fractions of the ranked units, mid-rank) against uniform(0, 1).
"""

from __future__ import annotations

import numpy as np

from parc.errors import ParcError
from parc.study.memorization.panel import RUN, runs


def dispersion_test(counts) -> tuple:
    """(index of dispersion Var/mean, upper-tail chi-square p)."""
    from scipy import stats

    counts = np.asarray(counts, dtype=float)
    mean = counts.mean()
    if mean == 0:
        return (np.nan, np.nan)
    statistic = float(((counts - mean) ** 2).sum() / mean)
    return statistic / (len(counts) - 1), float(stats.chi2.sf(statistic, len(counts) - 1))


def trend_test(counts) -> tuple:
    """(relative change first -> last block fitted by a Poisson GLM on block index, Wald p of the slope)."""
    import statsmodels.api as sm

    counts = np.asarray(counts, dtype=float)
    if counts.sum() == 0 or len(counts) < 3:
        return (np.nan, np.nan)
    x = np.linspace(0.0, 1.0, len(counts))
    fit = sm.GLM(counts, sm.add_constant(x), family=sm.families.Poisson()).fit()
    return float(np.exp(fit.params[1]) - 1.0), float(fit.pvalues[1])


def ks_test(events, n: int) -> tuple:
    """(KS statistic, p) of event ranks (0 .. n-1 among the ranked units) against uniform."""
    from scipy import stats

    events = np.asarray(events, dtype=float)
    if not len(events):
        return (np.nan, np.nan)
    result = stats.kstest((events + 0.5) / n, "uniform")
    return float(result.statistic), float(result.pvalue)


def block_counts(memorized, block: int) -> np.ndarray:
    """Events per block of `block` consecutive units (in training order); the partial tail is dropped."""
    memorized = np.asarray(memorized, dtype=float)
    blocks = len(memorized) // block
    return memorized[: blocks * block].reshape(blocks, block).sum(axis=1)


def order_tables(frame, block: int = 512, step=None):
    """(tests: one row per run, counts: one row per run x block) of the training units at `step`."""
    import pandas as pd

    if block < 1:
        raise ParcError(f"block={block} must be a positive number of sequences")
    if "score32" not in frame.columns:
        raise ParcError("the panel has no score32 column: the order test counts sequences memorized 32/32")
    train = frame[frame["unit_kind"] == "train"]
    position = "position" if "position" in train.columns else "example_id"
    tests, counts = [], []
    for run in runs(train):
        mine = train[(train["arch"] == run[0]) & (train["seed"] == run[1])]
        at = mine["step"].max() if step is None else step
        mine = mine[mine["step"] == at].sort_values(position)
        if len(mine) < 2 * block:
            raise ParcError(
                f"{run[0]} seed {run[1]} step {at}: {len(mine)} training units, under two blocks of {block}"
            )
        memorized = (mine["score32"].to_numpy(float) >= 1.0).astype(float)
        per_block = block_counts(memorized, block)
        ranked = len(per_block) * block
        identity = dict(zip(RUN, run), step=at, block=block)
        tests.append(
            {**identity, "n_blocks": len(per_block), "events": int(per_block.sum()), "mean": per_block.mean()}
            | dict(zip(("dispersion", "dispersion_p"), dispersion_test(per_block)))
            | dict(zip(("trend", "trend_p"), trend_test(per_block)))
            | dict(zip(("ks", "ks_p"), ks_test(np.flatnonzero(memorized[:ranked]), ranked)))
        )
        counts.append(pd.DataFrame({**identity, "block_index": np.arange(len(per_block)), "count": per_block}))
    return pd.DataFrame(tests), pd.concat(counts, ignore_index=True)


def qq_points(counts):
    """Pythia's Q-Q pairs: statsmodels ProbPlot of the counts against scipy's poisson(mean)."""
    from scipy import stats
    from statsmodels.graphics.gofplots import ProbPlot

    counts = np.asarray(counts, dtype=float)
    plot = ProbPlot(counts, dist=stats.poisson(counts.mean()))
    return plot.theoretical_quantiles, plot.sample_quantiles
