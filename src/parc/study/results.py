"""Tidy results tables that several processes append to and that survive kill -9.

A table lives in a directory. Each unit of work (e.g. one checkpoint x one evaluation) is written as its own
part file, `<dir>/parts/<name>/<sha1 of key>.parquet`, atomically: a part is absent or complete, so a killed
process loses at most the unit in progress, and processes (or Slurm array tasks) writing different units
never touch each other's files. `done(key)` makes reruns incremental. `publish()` rebuilds the consolidated
`<dir>/<name>.parquet` and `<dir>/<name>.csv` from all parts, sorted by the table's identity columns, so
the same parts give byte-identical tables whatever order they were written in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from parc.errors import ParcError
from parc.store.fileio import atomic_write

KEY_COLUMN = "_key"  # stored in each part, so a part can be traced back to its unit of work

# The evaluation table's columns (issue 8), in order; evaluations may add more after these.
RESULT_COLUMNS = [
    "arch",
    "size",
    "seed",
    "shard",
    "data_seed",
    "step",
    "tokens",
    "evaluation",
    "task",
    "metric",
    "value",
    "stderr",
    "n",
    "source",
    "revision",
    "commit",
    "parc_version",
    "lm_eval_version",
    "task_version",
]


class TidyTable:
    def __init__(self, directory: Path, name: str, sort_by: Sequence[str]):
        self.directory = Path(directory)
        self.name = name
        self.sort_by = list(sort_by)
        self.parts_dir = self.directory / "parts" / name

    def part_path(self, key: str) -> Path:
        return self.parts_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.parquet"

    def done(self, key: str) -> bool:
        return self.part_path(key).exists()

    def write(self, key: str, frame) -> Path:
        """Store the rows of one unit of work; replaces an earlier part with the same key."""
        frame = frame.copy()
        frame[KEY_COLUMN] = key
        try:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            return atomic_write(self.part_path(key), lambda tmp: frame.to_parquet(tmp, index=False))
        except OSError as exc:
            raise ParcError(
                f"cannot write results to {self.parts_dir} ({exc.strerror or exc}): pass a writable out="
            ) from None

    def keys(self) -> List[str]:
        return sorted(set(self.frame(with_key=True)[KEY_COLUMN])) if self.parts_dir.exists() else []

    def frame(self, with_key: bool = False):
        """Every row of every part, in a deterministic order."""
        import pandas as pd

        parts = sorted(self.parts_dir.glob("*.parquet")) if self.parts_dir.exists() else []
        if not parts:
            return pd.DataFrame(columns=self.sort_by)
        table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        order = [c for c in self.sort_by if c in table.columns] + [KEY_COLUMN]
        table = table.sort_values(order, kind="mergesort", na_position="first").reset_index(drop=True)
        return table if with_key else table.drop(columns=[KEY_COLUMN])

    def publish(self, csv: bool = True) -> Tuple[Path, Optional[Path]]:
        """Write `<name>.parquet` and (unless csv=False, e.g. for large per-example tables) `<name>.csv`,
        atomically, from the parts."""
        table = self.frame()
        self.directory.mkdir(parents=True, exist_ok=True)
        parquet = atomic_write(self.directory / f"{self.name}.parquet", lambda tmp: table.to_parquet(tmp, index=False))
        if not csv:
            return parquet, None
        csv_path = atomic_write(self.directory / f"{self.name}.csv", lambda tmp: table.to_csv(tmp, index=False))
        return parquet, csv_path
