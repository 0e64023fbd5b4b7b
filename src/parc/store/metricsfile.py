"""A run's `metrics.jsonl`, one JSON row per logged step: the file's format, its one reader and its rows' text.

`parc.training.metrics.RunReporter` appends rows (`rows_text`) and a resume cuts them back (`truncate_metrics`);
everything that reads the file (parc.plot, parc.grid status, the outlier alarm, the dry run's commit estimate,
the model card) reads it here. A crash mid-write leaves a torn last line, which is left out; a damaged line
before the last is a one-line ParcError naming the file and the line. Lives in store/ so hub/ can read it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

from parc.errors import ParcError

METRICS_FILE = "metrics.jsonl"
TAIL_BYTES = 1 << 16  # a metrics row is < 1 KB: the last 64 KB always hold the newest complete one


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows after `last_step` (steps a crashed run did past its last checkpoint), atomically.

    After a resume the file then reads exactly as an uninterrupted run's would; a row cut short by a crash or a
    full disk is dropped too (appending after it would glue the next row onto it).
    """
    from parc.store.iofaults import DiskWrites

    if not path.exists():
        return
    text = path.read_text()
    rows = parse_metrics(text, path)
    kept = [row for row in rows if row["step"] <= last_step]
    if len(kept) == len(rows) and (text.endswith("\n") or not text):
        return
    tmp = path.with_name(path.name + ".tmp")
    with DiskWrites(
        f"rewriting {path}", path.parent, cleanup=lambda: tmp.unlink(missing_ok=True), then="run the same command again"
    ):
        tmp.write_text(rows_text(kept))
        os.replace(tmp, path)


def rows_text(rows: List[dict]) -> str:
    """The file's text for these rows: one JSON object per line, each ended by a newline (the only writer)."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def parse_metrics(text: str, path, first_line: int = 1) -> List[dict]:
    """The rows of metrics.jsonl text, in file order (`first_line`: the number of the text's first line).

    The text after the last newline is a row being written, or one a crash cut short: left out unless it is
    already a whole row. Any other line that is not a JSON row is damage: a one-line ParcError naming the
    file and the line."""
    lines = text.split("\n")
    rows = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
        elif index < len(lines) - 1:
            raise ParcError(
                f"{path} line {first_line + index} is not a metrics row ({line[:40]!r}): the file is "
                f"damaged; restore it from a copy, or delete that line"
            )
    return rows


def read_metrics(path) -> List[dict]:
    """Every complete row of a run's metrics.jsonl (the one reader of the file; a torn last line is left out)."""
    path = Path(path)
    return parse_metrics(path.read_bytes().decode("utf-8", errors="replace"), path)


def last_metrics_row(path, tail_bytes: int = TAIL_BYTES) -> Optional[dict]:
    """The newest complete row (None: no file, or no row yet), reading only the file's last `tail_bytes`:
    status tables of long runs stay fast (a row is < 1 KB, so the tail always holds the newest complete one)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - tail_bytes))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    if size <= tail_bytes:
        rows = parse_metrics(tail, path)
    else:  # the tail begins inside a row: read from the next line on
        try:
            rows = parse_metrics(tail.partition("\n")[2], path)
        except ParcError:  # damaged: read the whole file, whose error numbers the line as the file does
            rows = read_metrics(path)
    return rows[-1] if rows else None


def loss_curve(path) -> Dict[int, float]:
    """step -> training loss of a run's metrics.jsonl ({} when there is none yet)."""
    if not Path(path).is_file():
        return {}
    return {row["step"]: float(row["loss"]) for row in read_metrics(path) if isinstance(row.get("loss"), (int, float))}


def measured_step_s(path) -> Optional[float]:
    """Median seconds per step of a run's metrics.jsonl (wall-clock `time` of consecutive rows); None: none yet."""
    import statistics

    if not Path(path).is_file():
        return None
    rows = read_metrics(path)
    gaps = [
        (b["time"] - a["time"]) / (b["step"] - a["step"])
        for a, b in zip(rows, rows[1:])
        if b["step"] > a["step"] and "time" in a and "time" in b
    ]
    return statistics.median(gaps) if gaps else None
