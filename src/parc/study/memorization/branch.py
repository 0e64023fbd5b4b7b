"""What an intervention did: a branch's panel against its parent's, unit by unit (`parc.memorization branch`).

A branch (identity column `intervention`, e.g. "block_swap@1000": data changed after step k = 1000) and its parent
(same architecture and seed, no intervention) score the same units: the panel samples training rows in the base
order, and a block-swap branch consumes them at other steps. For every unit both runs score at a checkpoint
t >= k: delta = outcome(branch) - outcome(parent), and shift = treat_step(branch) - treat_step(parent). Groups:
`moved later` (shift > 0), `moved earlier` (< 0), `unmoved` (trained after k at the same step), `before branch`
(trained at or before k: the same data in both) and `control` (never trained by either). After k every weight of
the two runs differs, so the effect of moving a unit is the difference in differences
did = mean delta(group) - mean delta(control), with a percentile band from resampling the units of both groups.
For nll, a negative did means the move made the run remember the unit better (recency, when it moved later).
"""

from __future__ import annotations

import numpy as np

from parc.errors import ParcError

GROUPS = ("moved later", "moved earlier", "unmoved", "before branch", "control")
KEYS = ["example_id", "unit_kind", "step"]


def pairs(frame):
    """[(branch rows, parent rows, label, k)] of every branch in the panel whose parent is there too."""
    if "intervention" not in frame.columns or not (frame["intervention"].fillna("") != "").any():
        raise ParcError(
            "the panel has no branch: evaluate a branch (parc.train branch_from=... intervention=...) "
            "together with its parent, e.g. runs=<parent dir>,<branch dir>"
        )
    label = frame["intervention"].fillna("")
    out = []
    for (arch, seed, change), branch in frame[label != ""].groupby(["arch", "seed", "intervention"], sort=True):
        parent_arch = arch.removesuffix(f" {change}")
        parent = frame[(frame["arch"] == parent_arch) & (frame["seed"] == seed) & (label == "")]
        if parent.empty:
            raise ParcError(
                f"{arch} seed {seed}: its parent (the same run without {change}) is not in the panel; "
                "evaluate the parent together with the branch"
            )
        out.append((branch, parent, change, int(str(change).rsplit("@", 1)[1])))
    return out


def unit_groups(both, k: int) -> np.ndarray:
    treat_b = both["treat_step_branch"].astype(float).to_numpy()
    treat_p = both["treat_step_parent"].astype(float).to_numpy()
    shift = treat_b - treat_p
    conditions = [both["unit_kind"].to_numpy() == "control", treat_p <= k, shift > 0, shift < 0]
    return np.select(conditions, ["control", "before branch", "moved later", "moved earlier"], "unmoved")


def branch_table(frame, outcome: str = "nll", samples: int = 200):
    """One row per branch x checkpoint >= k x group: n, mean delta, did with its band (module docstring)."""
    import pandas as pd

    rows = []
    for number, (branch, parent, change, k) in enumerate(pairs(frame)):
        columns = [*KEYS, "treat_step", outcome]
        sides = [side[side["unit_kind"].isin(["train", "control"])][columns] for side in (branch, parent)]
        both = sides[0].merge(sides[1], on=KEYS, suffixes=("_branch", "_parent"))
        both = both[both["step"] >= k].copy()
        both["delta"] = both[f"{outcome}_branch"] - both[f"{outcome}_parent"]
        both["group"] = unit_groups(both, k)
        arch, seed = branch["arch"].iloc[0], branch["seed"].iloc[0]
        rng = np.random.default_rng([number, 0])
        for step, at in both.groupby("step", sort=True):
            control = at.loc[at["group"] == "control", "delta"].to_numpy(float)
            for group in GROUPS:
                delta = at.loc[at["group"] == group, "delta"].to_numpy(float)
                if not len(delta):
                    continue
                did, low, high = did_band(delta, control, samples, rng)
                rows.append(
                    {"arch": arch, "seed": seed, "intervention": change, "step": int(step), "group": group}
                    | {"n": len(delta), "delta": float(delta.mean()), "did": did, "did_low": low, "did_high": high}
                )
    return pd.DataFrame(rows).assign(outcome=outcome)


def did_band(delta: np.ndarray, control: np.ndarray, samples: int, rng) -> tuple:
    """(mean delta - mean control delta, 2.5 and 97.5 percentiles over unit resamples of both)."""
    if not len(control):
        return (np.nan, np.nan, np.nan)
    did = float(delta.mean() - control.mean())
    if samples < 1:
        return (did, np.nan, np.nan)
    draws = delta[rng.integers(0, len(delta), (samples, len(delta)))].mean(axis=1) - control[
        rng.integers(0, len(control), (samples, len(control)))
    ].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return did, float(low), float(high)
