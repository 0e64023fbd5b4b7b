"""Running evaluations over checkpoints into one tidy table: incremental, crash-safe, shareable by processes.

Each unit of work is one checkpoint x one evaluation (`evaluations.unit_key`) and becomes one part file of
`<out>/results` (and of `<out>/examples/<evaluation>`) through `results.TidyTable`, so:
- a rerun evaluates only the units whose part is missing;
- a kill -9 loses at most the checkpoint in progress (parts are written atomically, examples first);
- several processes or Slurm array tasks (`part`/`num_parts`: every num_parts-th checkpoint) never write
  the same file; each publishes the consolidated table under a lock, so the last one to finish sees all.
Each checkpoint is loaded once (ModelCache) for all its pending evaluations.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from parc.errors import ParcError
from parc.study.evaluations import EvalResult, Evaluation, unit_key
from parc.study.results import RESULT_COLUMNS, TidyTable
from parc.study.sources.model_cache import ModelCache
from parc.study.sources.refs import CheckpointRef

SORT_BY = ["arch", "size", "seed", "shard", "data_seed", "step", "evaluation", "task", "metric", "source", "revision"]
EXAMPLE_SORT_BY = ["arch", "size", "seed", "shard", "data_seed", "step", "task", "example_id", "source", "revision"]
LOCK_FILE = ".publish.lock"


@dataclass
class RunSummary:
    evaluated: int  # units run by this process
    skipped: int  # units already in the table
    checkpoints: int  # checkpoints loaded
    seconds: float
    table: Path


def results_table(out: Path) -> TidyTable:
    return TidyTable(out, "results", SORT_BY)


def examples_table(out: Path, evaluation: str) -> TidyTable:
    return TidyTable(Path(out) / "examples", evaluation, EXAMPLE_SORT_BY)


def check_writable(out: Path) -> None:
    """Refuse an out dir we cannot create or write before anything runs (the probe file is removed)."""
    from parc.training.trainer import check_writable as probe

    try:
        probe(out)
    except ParcError:
        raise ParcError(f"cannot write results to out={out}: choose a writable out= or fix its permissions") from None


def library_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def result_frame(ref: CheckpointRef, evaluation: Evaluation, result: EvalResult):
    """The unit's rows with identity and provenance, columns in RESULT_COLUMNS order, extras after."""
    import pandas as pd

    stamp = {
        **ref.columns(),
        "evaluation": evaluation.name,
        "parc_version": library_version("parc"),
        "lm_eval_version": "",
        "task_version": "",
        **evaluation.provenance(),
    }
    rows = [{**stamp, **row} for row in result.rows]
    missing = [k for k in ("task", "metric", "value", "stderr", "n") if any(k not in row for row in rows)]
    if missing:
        raise ValueError(f"evaluation {evaluation.name} returned rows without {missing}")
    frame = pd.DataFrame(rows)
    extras = [c for c in frame.columns if c not in RESULT_COLUMNS]
    for column in RESULT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame[RESULT_COLUMNS + extras]


def example_frame(ref: CheckpointRef, evaluation: Evaluation, examples):
    frame = examples.copy()
    identity = {**ref.columns(), "evaluation": evaluation.name}
    clash = sorted(set(identity) & set(frame.columns))
    if clash:
        raise ValueError(f"evaluation {evaluation.name}: per-example columns {clash} are identity columns; rename them")
    for position, (column, value) in enumerate(identity.items()):
        frame.insert(position, column, [value] * len(frame))
    return frame


@contextlib.contextmanager
def publish_lock(out: Path):
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(out: Path, evaluations: Sequence[Evaluation]) -> Path:
    with publish_lock(out):
        parquet, _ = results_table(out).publish()
        for evaluation in evaluations:
            table = examples_table(out, evaluation.name)
            if table.parts_dir.exists():
                table.publish(csv=False)
    return parquet


def summary_line(ref: CheckpointRef, results: Dict[str, EvalResult], seconds: float) -> str:
    parts = []
    for name, result in results.items():
        if result.summary:
            parts.append(result.summary)
            continue
        shown = [
            f"{row['task']} {row['metric']} {row['value']:.4g}"
            for row in result.rows[:3]
            if isinstance(row.get("value"), (int, float))
        ]
        more = f" (+{len(result.rows) - 3} rows)" if len(result.rows) > 3 else ""
        parts.append(f"{name}: {', '.join(shown)}{more}")
    return f"{ref.run} step {ref.step}: {'; '.join(parts)} [{seconds:.1f} s]"


def run_evaluations(
    refs: Sequence[CheckpointRef],
    evaluations: Sequence[Evaluation],
    out: Path,
    cache: ModelCache,
    part: int = 0,
    num_parts: int = 1,
    progress: bool = True,
    echo=print,
) -> RunSummary:
    """Evaluate this process's share of `refs` with every evaluation; returns what was done."""
    from tqdm.auto import tqdm

    started = time.monotonic()
    table = results_table(out)
    mine = list(refs)[part::num_parts]
    pending: List[tuple] = [(ref, [e for e in evaluations if not table.done(unit_key(ref, e))]) for ref in mine]
    total = len(mine) * len(evaluations)
    todo = sum(len(p) for _, p in pending)
    echo(
        f"parc.evaluate: {len(mine)} checkpoints x {len(evaluations)} evaluations "
        f"({', '.join(e.name for e in evaluations)}): {total - todo} done before, {todo} to run -> {out}"
    )
    bar = tqdm(total=total, initial=total - todo, unit="eval", dynamic_ncols=True, disable=not progress)
    loaded_count = 0
    try:
        for ref, wanted in pending:
            if not wanted:
                continue
            began = time.monotonic()
            results: Dict[str, EvalResult] = {}
            with cache.open(ref) as loaded:
                loaded_count += 1
                for evaluation in wanted:
                    bar.set_description(f"{ref.run} step {ref.step} {evaluation.name}")
                    result = evaluation.run(loaded)
                    key = unit_key(ref, evaluation)
                    if result.examples is not None and len(result.examples):
                        examples_table(out, evaluation.name).write(key, example_frame(ref, evaluation, result.examples))
                    table.write(key, result_frame(ref, evaluation, result))
                    results[evaluation.name] = result
                    bar.update(1)
            (bar.write if progress else echo)(summary_line(ref, results, time.monotonic() - began))
    finally:
        bar.close()
    path = publish(out, evaluations)
    return RunSummary(
        evaluated=todo, skipped=total - todo, checkpoints=loaded_count, seconds=time.monotonic() - started, table=path
    )
