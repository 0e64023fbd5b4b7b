"""Where every run of a grid (architectures x seeds) stands, read from the files runs write (parc.grid status).

A cell is *done* when the checkpoint of its final step is complete, *running* when it wrote something within
`stale_after` seconds, *stalled* otherwise (crashed, or waiting in the queue), and *not started* when it has
no metrics or checkpoints. `grid_status(...)` composes the overrides as parc.train does and prints the table
(rich) or JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from parc.archs import NAMES as PARC_ARCHS  # noqa: F401  the grid's order, as slurm/train_array.sbatch numbers its tasks
from parc.config import RUN_CONFIG, cell_name, parse_cell_name, read_run_config
from parc.errors import ParcError
from parc.store.metricsfile import METRICS_FILE, last_metrics_row, loss_curve

PARC_SEEDS = tuple(range(6))
STATES = ("done", "running", "stalled", "not started")


@dataclass
class Cell:
    """One run of the grid, as its output directory tells it."""

    arch: str
    seed: int
    shard: int
    path: str
    state: str = "not started"
    step: Optional[int] = None  # the newest metrics row (or checkpoint, when no row was written yet)
    max_steps: Optional[int] = None
    loss: Optional[float] = None
    tokens: Optional[int] = None
    checkpoints: List[int] = field(default_factory=list)  # complete checkpoint steps
    pushed: List[str] = field(default_factory=list)  # Hub revisions confirmed
    pending: List[str] = field(default_factory=list)  # Hub revisions journaled, not yet confirmed
    abandoned: List[str] = field(default_factory=list)
    updated: Optional[float] = None  # unix time of the newest file written
    age_s: Optional[float] = None
    outlier: str = ""  # the seed outlier alarm (parc.training.outliers): "z=+7.2 @ 40 (3/8 steps)", or ""


def run_max_steps(cell_dir: Path) -> Optional[int]:
    """trainer.max_steps from the config the run saved (each cell may differ from today's defaults)."""
    try:
        return int(read_run_config(cell_dir)["trainer"]["max_steps"])
    except (ParcError, TypeError, KeyError, ValueError):  # none, damaged, or from another version: the default will do
        return None


def hub_revisions(cell_dir: Path) -> Dict[str, List[str]]:
    """Revision names by journal state: pushed, pending, abandoned."""
    from parc.hub.journal import JOURNAL_DIR, Journal

    found: Dict[str, List[str]] = {"pushed": [], "pending": [], "abandoned": []}
    if not (cell_dir / JOURNAL_DIR).is_dir():
        return found
    try:
        entries = Journal(cell_dir).entries()
    except (OSError, ValueError, KeyError):  # an entry mid-rename; the next look will see it
        return found
    for entry in entries:
        found.setdefault(entry.get("state", "pending"), []).append(entry["revision"])
    return found


def newest_write(cell_dir: Path) -> Optional[float]:
    """Modification time of the newest file a run touches regularly (metrics, checkpoints, journal)."""
    from parc.hub.journal import JOURNAL_DIR

    candidates = [cell_dir / METRICS_FILE, cell_dir / RUN_CONFIG, cell_dir / JOURNAL_DIR, cell_dir]
    candidates += list(cell_dir.glob("checkpoint-*")) + list(cell_dir.glob(".checkpoint-*"))
    times = []
    for path in candidates:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None


def read_cell(
    cell_dir: Path, arch: str, seed: int, shard: int, default_max_steps: int, now: float, stale_after: float
) -> Cell:
    from parc.store.checkpoint import complete_checkpoints, step_of

    cell = Cell(arch=arch, seed=seed, shard=shard, path=str(cell_dir), max_steps=default_max_steps)
    if not cell_dir.is_dir():
        return cell
    cell.max_steps = run_max_steps(cell_dir) or default_max_steps
    cell.checkpoints = [step_of(p) for p in complete_checkpoints(cell_dir)]
    row = last_metrics_row(cell_dir / METRICS_FILE)
    if row is not None:
        cell.step, cell.loss, cell.tokens = row["step"], row.get("loss"), row.get("tokens")
    elif cell.checkpoints:
        cell.step = cell.checkpoints[-1]
    revisions = hub_revisions(cell_dir)
    cell.pushed, cell.pending, cell.abandoned = revisions["pushed"], revisions["pending"], revisions["abandoned"]
    cell.updated = newest_write(cell_dir)
    cell.age_s = None if cell.updated is None else max(0.0, now - cell.updated)
    cell.state = classify(cell, stale_after)
    return cell


def classify(cell: Cell, stale_after: float) -> str:
    if cell.step is None:
        return "not started"
    if cell.checkpoints and cell.checkpoints[-1] == cell.max_steps:
        return "done"
    if cell.age_s is not None and cell.age_s <= stale_after:
        return "running"
    return "stalled"


def discover(root: Path) -> List[Tuple[str, int, int]]:
    """(arch, seed, shard) of every cell directory under the run root."""
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        cell = parse_cell_name(path.name)
        if cell and path.is_dir():
            found.append(cell)
    return found


def grid_cells(
    root: Path,
    archs: Iterable[str],
    seeds: Iterable[int],
    shard: int,
    default_max_steps: int,
    stale_after: float,
    now: Optional[float] = None,
) -> List[Cell]:
    """The asked-for grid, plus any other cell found on disk, in grid order (arch, then seed)."""
    now = time.time() if now is None else now
    archs = list(archs)
    wanted = {(a, s, shard) for a in archs for s in seeds} | set(discover(root))
    order = {name: i for i, name in enumerate(archs)}
    keys = sorted(wanted, key=lambda k: (order.get(k[0], len(order)), k[0], k[2], k[1]))
    return [read_cell(root / cell_name(a, s, sh), a, s, sh, default_max_steps, now, stale_after) for a, s, sh in keys]


def mark_outliers(cells: List[Cell], k: float) -> None:
    """Set `outlier` on every cell whose training loss leaves the other seeds' band (same architecture)."""
    from parc.training.outliers import grouped_outliers

    curves = {i: loss_curve(Path(c.path) / METRICS_FILE) for i, c in enumerate(cells) if c.step is not None}
    found = grouped_outliers(curves, {i: cells[i].arch for i in curves}, k)
    for i, outlier in found.items():
        cells[i].outlier = outlier.describe()


def summarize(cells: List[Cell]) -> Dict[str, int]:
    return {state: sum(c.state == state for c in cells) for state in STATES}


# --- presentation -------------------------------------------------------------------------------------


def format_age(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def format_revisions(cell: Cell) -> str:
    if not (cell.pushed or cell.pending or cell.abandoned):
        return ""
    text = f"{len(cell.pushed)}"
    if cell.pending:
        text += f" (+{len(cell.pending)} pending)"
    if cell.abandoned:
        text += f" ({len(cell.abandoned)} abandoned)"
    return text


STYLE = {"done": "green", "running": "cyan", "stalled": "bold red", "not started": "dim"}


def render(root: Path, cells: List[Cell]) -> None:
    from rich.console import Console
    from rich.table import Table

    counts = summarize(cells)
    caption = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    show_shard = len({c.shard for c in cells}) > 1
    table = Table(title=f"{root}", caption=f"{len(cells)} runs: {caption}")
    columns = (
        ["arch", "seed"]
        + (["shard"] if show_shard else [])
        + ["step", "loss", "checkpoints", "pushed", "updated", "state", "outlier"]
    )
    for name in columns:
        table.add_column(name, justify="left" if name in ("arch", "state") else "right", no_wrap=True)
    previous_arch = None
    for cell in cells:
        if previous_arch is not None and cell.arch != previous_arch:
            table.add_section()
        previous_arch = cell.arch
        values = (
            [cell.arch, str(cell.seed)]
            + ([str(cell.shard)] if show_shard else [])
            + [
                "" if cell.step is None else f"{cell.step}/{cell.max_steps}",
                "" if cell.loss is None else f"{cell.loss:.4f}",
                f"{len(cell.checkpoints)}, last {cell.checkpoints[-1]}" if cell.checkpoints else "",
                format_revisions(cell),
                format_age(cell.age_s),
                f"[{STYLE[cell.state]}]{cell.state}[/]",
                f"[bold red]{cell.outlier}[/]" if cell.outlier else "",
            ]
        )
        table.add_row(*values)
    console = Console()
    console.width = max(console.width, 100)  # piped output: a full table rather than truncated columns
    console.print(table)
    if not root.is_dir():
        Console(stderr=True).print(f"no output under {root} yet: check run_name= / paths.root= (or root=)")


def grid_status(
    overrides: List[str],
    root: Optional[Path],
    archs: Optional[List[str]],
    seeds: List[int],
    stale_after: float,
    as_json: bool,
    outlier_k: float = 6.0,
) -> None:
    """Print where every run of the grid stands; `archs` None: the three Parc architectures."""
    from parc.config import compose

    cfg = compose(overrides)
    root = root if root is not None else Path(cfg.paths.output_root) / cfg.run_name
    cells = grid_cells(
        root, list(archs or PARC_ARCHS), sorted(set(seeds)), cfg.data.shard, cfg.trainer.max_steps, stale_after
    )
    if outlier_k > 0:  # 0 turns the alarm off (it reads every metrics.jsonl in full)
        mark_outliers(cells, outlier_k)
    if as_json:
        print(
            json.dumps({"root": str(root), "summary": summarize(cells), "cells": [asdict(c) for c in cells]}, indent=1)
        )
    else:
        render(root, cells)
