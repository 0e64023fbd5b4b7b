"""Difference-in-differences ATT(g, t) on a balanced panel: Callaway & Sant'Anna's unconditional 2x2 of means.

A unit's cohort g is the first checkpoint at or after the step that trained it (`panel.cohorts`); never-trained
units have g = inf. For cohort g at checkpoint t the effect is

    ATT(g, t) = (mean_{G=g} Y_t - mean_{G=g} Y_b) - (mean_{C} Y_t - mean_{C} Y_b)

with base b the checkpoint just before g when t >= g and the one just before t when t < g (the "varying" base:
pre-period cells are placebo tests of parallel trends), and controls C the never-treated units
(control=never) or every unit not yet treated at max(t, b), never-treated included, other than cohort g
(control=notyet). Cohorts at the first checkpoint have no pre-period and are not estimated. Bands come from
a nonparametric bootstrap over units: each draw reweights units by multinomial counts and recomputes every
cell from weighted cohort sums, so aggregates (instantaneous t = g, persistent by event time, residual at the
last checkpoint) are recomputed on the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from parc.errors import ParcError

CONTROLS = ("never", "notyet")


@dataclass
class Panel:
    """Outcomes Y (units x checkpoints), each unit's cohort (inf: never treated) and the checkpoints."""

    outcomes: np.ndarray
    cohort: np.ndarray
    periods: np.ndarray


def wide(rows, outcome: str) -> Panel:
    """One run's rows (example_id, step, cohort, outcome) -> a balanced Panel (units missing a checkpoint dropped)."""
    table = rows.pivot_table(index="example_id", columns="step", values=outcome, aggfunc="mean").dropna()
    cohort = rows.groupby("example_id")["cohort"].first().reindex(table.index)
    return Panel(table.to_numpy(float), cohort.fillna(np.inf).to_numpy(float), table.columns.to_numpy(float))


def cohort_sums(panel: Panel, weights: np.ndarray) -> Dict[float, tuple]:
    """cohort -> (weighted outcome sums, draws x checkpoints; weight totals, draws)."""
    sums = {}
    for g in np.unique(panel.cohort):
        members = panel.cohort == g
        w = weights[:, members]
        sums[float(g)] = (w @ panel.outcomes[members], w.sum(axis=1))
    return sums


def cells_of(panel: Panel, control: str) -> List[dict]:
    """(g, t, base, event, controls) of every estimable cell."""
    if control not in CONTROLS:
        raise ParcError(f"control={control}: choose never (never-treated units) or notyet (not yet treated)")
    periods = list(panel.periods)
    index = {p: i for i, p in enumerate(periods)}
    groups = sorted(set(panel.cohort.tolist()))
    cells = []
    for g in (g for g in groups if np.isfinite(g) and index.get(g, 0) > 0):
        for i, t in enumerate(periods):
            base = periods[index[g] - 1] if t >= g else (periods[i - 1] if i > 0 else None)
            if base is None:
                continue
            later = max(t, base)
            pool = [np.inf] if control == "never" else [h for h in groups if h > later and h != g]
            cells.append({"g": g, "t": t, "base": base, "event": i - index[g], "controls": pool})
    return cells


def att_gt(panel: Panel, control: str = "never", samples: int = 0, seed: int = 0):
    """The cells (a DataFrame: g, t, base, event, att, n_treated, n_control) and their bootstrap draws
    (samples x cells; empty when samples=0)."""
    import pandas as pd

    n = len(panel.outcomes)
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones((1, n)), rng.multinomial(n, np.full(n, 1.0 / n), size=samples)])
    sums = cohort_sums(panel, weights)
    column = {p: i for i, p in enumerate(panel.periods)}
    rows, draws = [], []
    for cell in cells_of(panel, control):
        pool = [h for h in cell.pop("controls") if h in sums]
        if not pool:
            continue
        t, b = column[cell["t"]], column[cell["base"]]
        s_g, n_g = sums[cell["g"]]
        s_c = sum(sums[h][0] for h in pool)
        n_c = sum(sums[h][1] for h in pool)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (s_g[:, t] - s_g[:, b]) / n_g - (s_c[:, t] - s_c[:, b]) / n_c
        rows.append({**cell, "att": value[0], "n_treated": int(n_g[0]), "n_control": int(n_c[0])})
        draws.append(value[1:])
    table = pd.DataFrame(rows, columns=["g", "t", "base", "event", "att", "n_treated", "n_control"])
    return table, (np.array(draws).T if draws else np.zeros((samples, 0)))


def summaries(cells, draws: np.ndarray, level: float = 0.95):
    """Instantaneous (t = g, per g), persistent (per event time >= 0, cohorts weighted by size) and residual
    (last checkpoint, per g) aggregates with bootstrap percentile bands: columns summary, key, att, low, high."""
    import pandas as pd

    rows = []
    last = cells["t"].max()
    post = cells[cells["event"] >= 0]
    parts = [("instantaneous", "g", post[post["event"] == 0]), ("residual", "g", post[post["t"] == last])]
    parts += [("persistent", "event", post)]
    for summary, key, part in parts:
        for value, group in part.groupby(key, sort=True):
            weight = group["n_treated"].to_numpy(float)
            weight = weight / weight.sum()
            centre = float(group["att"].to_numpy() @ weight)
            low, high = band(draws[:, group.index.to_numpy()] @ weight if draws.size else np.zeros(0), level)
            rows.append({"summary": summary, "key": float(value), "att": centre, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["summary", "key", "att", "low", "high"])


def band(values: np.ndarray, level: float = 0.95) -> tuple:
    values = values[np.isfinite(values)]
    if not len(values):
        return (np.nan, np.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def cell_bands(cells, draws: np.ndarray, level: float = 0.95):
    """The cells with low/high columns: each cell's bootstrap percentile band over units."""
    cells = cells.copy()
    bands = [band(draws[:, i], level) if draws.size else (np.nan, np.nan) for i in range(len(cells))]
    cells["low"] = [b[0] for b in bands]
    cells["high"] = [b[1] for b in bands]
    return cells
