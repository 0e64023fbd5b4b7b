"""The difference between two selections of an evaluation table (two architectures, or two steps) on one metric,
with bootstrap confidence intervals: over seeds, and over seeds and examples (MultiBERTs' Multi-Bootstrap).

A selection is a set of `column=value` filters on the tidy results table (`arch=pythia`, `step=100`, `size=tiny`);
each selected run (arch, size, seed, shard, data_seed) contributes one value, the metric at the one step selected.
The difference is mean(A) - mean(B) over runs. Bootstrap replicate r draws, from one numpy Generator seeded
with `seed`, in this order: A's runs (with replacement), B's runs, then the examples: one draw shared by both
sides when they were scored on the same examples (so example difficulty cancels), else one per side. When A and
B are the same runs (two steps of them), their runs are drawn once, paired. The interval is the percentile
interval of the replicates. Per-example values come from `<evals>/examples/<evaluation>.parquet`, column named
as the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from parc.errors import ParcError

RUN_COLUMNS = ["arch", "size", "seed", "shard", "data_seed", "intervention"]


@dataclass
class Side:
    label: str
    runs: List[tuple]  # run identities, in table order
    values: np.ndarray  # [runs] the metric per run
    examples: Optional[np.ndarray] = None  # [runs, examples] per-example values, columns in example_ids order
    example_ids: Optional[np.ndarray] = None


def parse_filters(items: Sequence[str]) -> Dict[str, str]:
    filters = {}
    for item in items:
        for pair in filter(None, item.split(",")):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ParcError(f"selection {pair!r} is not column=value: pass e.g. a=arch=pythia b=arch=mamba")
            filters[key.strip()] = value.strip()
    return filters


def select(table, filters: Dict[str, str], label: str):
    rows = table
    for key, wanted in filters.items():
        if key not in table.columns:
            raise ParcError(
                f"{label}={key}={wanted}: the table has no column {key!r}; use one of "
                f"{', '.join(c for c in table.columns if not c.startswith('_'))}"
            )
        rows = rows[rows[key].astype(str) == wanted]
    if rows.empty:
        raise ParcError(
            f"{label}={','.join(f'{k}={v}' for k, v in filters.items())} selects no rows of this "
            f"metric: check the values (python -m parc.plot evals shows what is there)"
        )
    steps = sorted(rows["step"].unique())
    if len(steps) > 1:
        raise ParcError(f"{label}= spans steps {', '.join(map(str, steps[:8]))}: pass step=N (or step=N in {label}=)")
    return rows


def metric_rows(table, metric: str, task: Optional[str]):
    if metric not in set(table["metric"]):
        raise ParcError(f"unknown metric {metric!r}: the table has {', '.join(sorted(set(table['metric'])))}")
    rows = table[table["metric"] == metric]
    tasks = sorted(rows["task"].unique())
    if task is None and len(tasks) > 1:
        raise ParcError(f"metric {metric!r} is reported for several tasks ({', '.join(tasks)}): pass task=")
    if task is not None:
        if task not in tasks:
            raise ParcError(f"metric {metric!r} has no task {task!r}: choose among {', '.join(tasks)}")
        rows = rows[rows["task"] == task]
    return rows


def run_key(row) -> tuple:
    return tuple(None if v != v else v for v in (row[c] for c in RUN_COLUMNS))  # NaN -> None, comparable


def build_side(rows, label: str, examples=None, metric: str = "") -> Side:
    rows = rows.assign(**{c: None for c in RUN_COLUMNS if c not in rows})  # tables written before a column existed
    rows = rows.sort_values(RUN_COLUMNS, kind="mergesort", na_position="first")
    runs = [run_key(r) for _, r in rows.iterrows()]
    if len(set(runs)) != len(runs):
        raise ParcError(
            f"{label}= selects several rows per run (more than one evaluation or revision): "
            f"narrow it, e.g. with evaluation=... or revision=..."
        )
    side = Side(label, runs, rows["value"].to_numpy(dtype=float))
    if examples is not None and metric in examples.columns:
        per_run = []
        for _, row in rows.iterrows():
            mask = np.ones(len(examples), dtype=bool)
            for column in ("source", "revision", "commit", "task"):
                mask &= (examples[column] == row[column]).to_numpy()
            chosen = examples[mask].sort_values("example_id", kind="mergesort")
            per_run.append((chosen["example_id"].to_numpy(), chosen[metric].to_numpy(dtype=float)))
        ids = per_run[0][0] if per_run else None
        if per_run and len(ids) and all(np.array_equal(i, ids) for i, _ in per_run):
            side.examples, side.example_ids = np.stack([v for _, v in per_run]), ids
    return side


def multi_bootstrap(
    a: Side, b: Side, samples: int = 2000, seed: int = 0, examples: bool = False, level: float = 0.95
) -> tuple:
    """Percentile interval of mean(A) - mean(B) over bootstrap replicates (draw order: module docstring)."""
    rng = np.random.default_rng(seed)
    paired = a.runs == b.runs
    shared = examples and np.array_equal(a.example_ids, b.example_ids)
    draws = np.empty(samples)
    for r in range(samples):
        runs_a = rng.integers(0, len(a.runs), len(a.runs))
        runs_b = runs_a if paired else rng.integers(0, len(b.runs), len(b.runs))
        if not examples:
            draws[r] = a.values[runs_a].mean() - b.values[runs_b].mean()
            continue
        ex_a = rng.integers(0, a.examples.shape[1], a.examples.shape[1])
        ex_b = ex_a if shared else rng.integers(0, b.examples.shape[1], b.examples.shape[1])
        draws[r] = a.examples[runs_a][:, ex_a].mean() - b.examples[runs_b][:, ex_b].mean()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def read_examples(evals_dir: Path, evaluations: Sequence[str]):
    import pandas as pd

    frames = [pd.read_parquet(p) for e in evaluations if (p := Path(evals_dir) / "examples" / f"{e}.parquet").is_file()]
    return pd.concat(frames, ignore_index=True) if frames else None


def compare(
    evals_dir: Path,
    metric: str,
    a_filters: Dict[str, str],
    b_filters: Dict[str, str],
    step: Optional[int] = None,
    task: Optional[str] = None,
    samples: int = 2000,
    seed: int = 0,
) -> dict:
    from parc.study.evaluations.figures import read_results

    table = metric_rows(read_results(evals_dir), metric, task)
    if step is not None:
        a_filters, b_filters = {"step": str(step), **a_filters}, {"step": str(step), **b_filters}
    rows_a, rows_b = select(table, a_filters, "a"), select(table, b_filters, "b")
    examples = read_examples(evals_dir, sorted(set(rows_a["evaluation"]) | set(rows_b["evaluation"])))
    a, b = build_side(rows_a, "a", examples, metric), build_side(rows_b, "b", examples, metric)
    result = {
        "metric": metric,
        "task": str(rows_a["task"].iloc[0]),
        "a": a_filters,
        "b": b_filters,
        "step_a": int(rows_a["step"].iloc[0]),
        "step_b": int(rows_b["step"].iloc[0]),
        "runs_a": len(a.runs),
        "runs_b": len(b.runs),
        "mean_a": float(a.values.mean()),
        "mean_b": float(b.values.mean()),
        "difference": float(a.values.mean() - b.values.mean()),
        "paired": a.runs == b.runs,
        "samples": samples,
        "seed": seed,
        "ci_seeds": multi_bootstrap(a, b, samples, seed),
    }
    if a.examples is not None and b.examples is not None:
        result["ci_seeds_examples"] = multi_bootstrap(a, b, samples, seed, examples=True)
        result["examples"] = (a.examples.shape[1], b.examples.shape[1])
    return result


def describe(result: dict) -> str:
    def side(name):
        filters = ",".join(f"{k}={v}" for k, v in result[name].items())
        return (
            f"{filters} ({result['runs_' + name]} run(s), step {result['step_' + name]}): {result['mean_' + name]:.6g}"
        )

    lines = [
        f"{result['metric']} on {result['task']}: A {side('a')}; B {side('b')}",
        f"A - B = {result['difference']:.6g}",
    ]
    how = f"{result['samples']} resamples, seed {result['seed']}{', paired runs' if result['paired'] else ''}"
    low, high = result["ci_seeds"]
    lines.append(f"  95% CI over seeds:              [{low:.6g}, {high:.6g}]  ({how})")
    if "ci_seeds_examples" in result:
        low, high = result["ci_seeds_examples"]
        lines.append(
            f"  95% CI over seeds and examples: [{low:.6g}, {high:.6g}]  (Multi-Bootstrap, "
            f"{result['examples'][0]} / {result['examples'][1]} examples)"
        )
    return "\n".join(lines)
