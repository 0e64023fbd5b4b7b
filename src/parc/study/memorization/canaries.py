"""Canaries against their never-inserted references: exposure and extraction by repetition count, window and time.

Reads the panel of `eval=canaries` (unit_kind canary | reference; `window`, `repeats`, `last_step`, `exposure`,
`exposure_fit`, `secret_nll`, `score32`). Per run (architecture x seed) and checkpoint, each group of canaries
(window x repetition count) and the references get the mean of every outcome and `extracted`, the fraction with
score32 == 1 (all C greedy tokens right). A window's end is its last insertion (the largest `last_step` of its
canaries); "right after" a window is the first checkpoint at or after that step; "the end", the last checkpoint.

The checks of the demonstration (issue 25), on seed means (bands: Parc's bootstrap over seeds):
- `monotone`: right after each window, mean exposure (and exposure_fit) never decreases from one repetition count
  to the next;
- `extracted`: right after each window, the extracted fraction of the groups repeated >= `strong` times, against
  the largest fraction of references extracted at any checkpoint (expected 0);
- `decay`: each group's exposure_fit at the end is below its value right after the window and above the references'
  upper band at the end;
- `late_minus_early` (reported, not judged): exposure_fit at the end, late window minus early window, per repetition
  count.
A window that ends before a run's first checkpoint (a branch's, for a window before its step) is not judged there.
"""

from __future__ import annotations

import numpy as np

from parc.errors import ParcError
from parc.study.memorization.panel import RUN, cohorts
from parc.study.memorization.profile import seed_bootstrap

MEASURES = ("exposure", "exposure_fit", "secret_nll", "score32", "extracted")
REFERENCE = "references"


def group_table(frame):
    """One row per run x checkpoint x group: `group` ("<r>x" or "references"), window, repeats, the outcome
    means and `n` units; plus the run's `window_end` and `after` (first checkpoint at or after it)."""

    missing = [c for c in ("window", "repeats", "last_step", "exposure", "exposure_fit") if c not in frame.columns]
    if missing:
        raise ParcError(f"the panel lacks {missing}: score the runs with eval=canaries (it adds exposure)")
    rows = frame[frame["unit_kind"].isin(["canary", "reference"])].copy()
    if not (rows["unit_kind"] == "canary").any():
        raise ParcError("the panel has no canaries: train with data.canaries.* (e.g. experiment=mini_parc_canaries)")
    rows["extracted"] = (rows["score32"] >= 1.0).astype(float)
    canary = rows["unit_kind"] == "canary"
    rows["group"] = np.where(canary, rows["repeats"].astype("Int64").astype(str) + "x", REFERENCE)
    rows["window"] = np.where(canary, rows["window"].astype("float"), np.nan)
    rows["repeats"] = np.where(canary, rows["repeats"].astype("float"), np.nan)
    keys = [*RUN, "step", "group", "window", "repeats"]
    table = rows.groupby(keys, dropna=False, sort=True)[list(MEASURES)].mean().reset_index()
    table["n"] = rows.groupby(keys, dropna=False, sort=True).size().to_numpy()
    ends = rows[canary].groupby([*RUN, "window"])["last_step"].max().astype(float).rename("window_end")
    table = table.merge(ends.reset_index(), on=[*RUN, "window"], how="left")
    table["after"] = np.nan
    for _, index in table.groupby(RUN, sort=False).groups.items():
        mine = table.loc[index]
        table.loc[index, "after"] = cohorts(mine["window_end"], np.unique(mine["step"]))
    return table


def seed_table(groups, samples: int = 2000):
    """Seed means with bootstrap bands of every measure per arch x step x group x window."""
    long = groups.melt(
        id_vars=[*RUN, "step", "group", "window", "repeats"], value_vars=list(MEASURES), var_name="measure"
    )
    keys = ["window", "repeats"]
    long[keys] = long[keys].fillna(-1)  # groupby drops NaN keys, and references have neither
    out = seed_bootstrap(long, ["arch", "measure", "group", *keys, "step"], value="value", samples=samples)
    out[keys] = out[keys].where(out[keys] >= 0, np.nan)
    return out


def checks(groups, seeds, strong: int = 16):
    """The demonstration's checks, one row each (see the module docstring): check, arch, window, repeats, step,
    value, low, high, reference, holds (None where only reported)."""
    import pandas as pd

    rows = []
    for arch in sorted(groups["arch"].unique(), key=str):
        mine, bands = groups[groups["arch"] == arch], seeds[seeds["arch"] == arch]
        last = float(mine["step"].max())
        refs = bands[bands["group"] == REFERENCE]
        ref_extracted = float(refs.loc[refs["measure"] == "extracted", "mean"].max())
        ref_end = refs[(refs["measure"] == "exposure_fit") & (refs["step"] == last)]
        ref_high = float(ref_end["high"].iloc[0]) if len(ref_end) else np.nan
        planted = bands[bands["group"] != REFERENCE]
        for window in sorted(planted["window"].dropna().unique()):
            if mine["step"].min() >= mine.loc[mine["window"] == window, "window_end"].max():
                continue  # a branch whose first checkpoint comes after this window: nothing to judge
            after = float(mine.loc[mine["window"] == window, "after"].max())
            at = planted[(planted["window"] == window) & (planted["step"] == after)]
            end = planted[(planted["window"] == window) & (planted["step"] == last)]
            base = {"arch": arch, "window": int(window)}
            for measure in ("exposure", "exposure_fit"):
                series = at[at["measure"] == measure].sort_values("repeats")
                steps = np.diff(series["mean"].to_numpy())
                rows.append(base | {"check": f"monotone_{measure}", "step": after, "value": float(steps.min())} |
                            {"holds": bool((steps >= -1e-9).all())})  # fmt: skip
            for _, row in (
                at[(at["measure"] == "extracted") & (at["repeats"] >= strong)].sort_values("repeats").iterrows()
            ):
                rows.append(base | pick(row) | {"check": "extracted", "reference": ref_extracted} |
                            {"holds": bool(row["mean"] >= 1.0 and ref_extracted == 0.0)})  # fmt: skip
            for _, row in end[end["measure"] == "exposure_fit"].sort_values("repeats").iterrows():
                right_after = at[(at["measure"] == "exposure_fit") & (at["repeats"] == row["repeats"])]["mean"]
                peak = float(right_after.iloc[0]) if len(right_after) else np.nan
                holds = None if window == mine["window"].max() and after == last else bool(row["mean"] < peak)
                rows.append(base | pick(row) | {"check": "decay", "reference": ref_high, "peak": peak} |
                            {"holds": None if holds is None else holds and bool(row["low"] > ref_high)})  # fmt: skip
        rows += late_minus_early(mine, arch, last)
    columns = ["check", "arch", "window", "repeats", "step", "value", "low", "high", "reference", "peak", "holds"]
    return pd.DataFrame(rows).reindex(columns=columns)


def pick(row) -> dict:
    """A seed-band row's repetition count, step, mean and band as a check row's fields."""
    return {"repeats": int(row["repeats"]), "step": float(row["step"])} | {
        name: row[column] for name, column in (("value", "mean"), ("low", "low"), ("high", "high"))
    }


def late_minus_early(mine, arch, last) -> list:
    """Per repetition count: exposure_fit at the end, last window minus first, seed mean and bootstrap band."""
    from parc.study.stats import bootstrap_ci

    windows = sorted(mine["window"].dropna().unique())
    if len(windows) < 2:
        return []
    end = mine[mine["step"] == last]
    wide = end.pivot_table(index=["seed", "repeats"], columns="window", values="exposure_fit")
    rows = []
    for repeats, per_seed in (wide[windows[-1]] - wide[windows[0]]).groupby(level="repeats"):
        values = per_seed.dropna().to_numpy(float)
        low, high = bootstrap_ci(lambda rng, v=values: float(rng.choice(v, len(v)).mean()), samples=2000)
        rows.append(
            {"check": "late_minus_early", "arch": arch, "repeats": int(repeats), "step": last}
            | {"value": float(values.mean()), "low": low, "high": high, "holds": None}
        )
    return rows
