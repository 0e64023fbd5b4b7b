"""The panel the memorization analyses read: per-unit rows of `<evals>/examples/<evaluation>.parquet`.

parc.evaluate's panel mode writes one row per unit x checkpoint with `example_id`, `unit_kind` (train |
control | canary | reference), `treat_step` (the optimizer step that consumed the unit; a canary's first
insertion; null for never-trained units), `nll`, `accuracy`, `score32` and the checkpoint's identity (`step`,
`arch`, `size`, `seed`, ...). This module loads it, checks it, picks one family of units (training sequences
with their never-trained controls, or canaries with their never-inserted references) and assigns cohorts.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from parc.errors import ParcError
from parc.study.plots import group_label
from parc.study.results import TidyTable

UNITS = ("train", "canary")
CONTROL_OF = {"train": "control", "canary": "reference"}  # the never-treated units of each family
OUTCOMES = ("nll", "accuracy", "score32")
LOWER_IS_MORE = {"nll"}  # outcomes where memorisation lowers the value (memorisation = -ATT, as Lesci)
RUN = ["arch", "seed"]  # one run: an architecture label (with its size when a table has several) and a seed
NEEDED = ("example_id", "unit_kind", "treat_step", "step", "arch", "seed")


def read_panel(evals: Path, evaluation: str = "memorization"):
    """The per-unit rows of `evaluation` in parc.evaluate's out dir `evals` (published table, else its parts)."""
    import pandas as pd

    path = Path(evals) / "examples" / f"{evaluation}.parquet"
    if path.is_file():
        frame = pd.read_parquet(path)
    else:
        frame = TidyTable(Path(evals) / "examples", evaluation, ["arch", "seed", "step", "example_id"]).frame()
    if frame.empty:
        raise ParcError(
            f"evals={evals}: no per-unit rows of {evaluation} (looked for {path}); run parc.evaluate with its panel mode"
        )
    return check_panel(frame, f"evals={evals}")


def check_panel(frame, where: str = "panel"):
    """The frame with `arch` as the line label (arch + size when sizes differ); refused without the columns."""
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise ParcError(f"{where}: the panel lacks columns {missing}; it needs {list(NEEDED)} and an outcome")
    frame = frame.copy()
    frame["arch"] = group_label(frame)
    return frame


def family(frame, units: str):
    """The rows of one family: `units` (train | canary) plus their never-treated controls, with `treated`."""
    if units not in UNITS:
        raise ParcError(f"units={units}: choose one of {', '.join(UNITS)}")
    rows = frame[frame["unit_kind"].isin([units, CONTROL_OF[units]])].copy()
    if not (rows["unit_kind"] == units).any():
        raise ParcError(f"the panel has no {units} units (unit_kind has {sorted(frame['unit_kind'].unique())})")
    rows["treated"] = rows["unit_kind"] == units
    return rows


def cohorts(treat_steps, checkpoints: Sequence[int]):
    """The first checkpoint at or after each treat step (NaN: never treated, or treated after the last one)."""
    checkpoints = np.sort(np.asarray(checkpoints, dtype=float))
    treat = np.asarray(treat_steps, dtype=float)
    index = np.searchsorted(checkpoints, treat, side="left")
    found = ~np.isnan(treat) & (index < len(checkpoints))
    out = np.full(len(treat), np.nan)
    out[found] = checkpoints[index[found]]
    return out


def check_outcome(frame, outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ParcError(f"outcome={outcome}: choose one of {', '.join(OUTCOMES)}")
    if outcome not in frame.columns:
        raise ParcError(f"outcome={outcome}: the panel has no {outcome} column")


def runs(frame) -> List[tuple]:
    return sorted(frame.groupby(RUN, sort=True).groups, key=str)
