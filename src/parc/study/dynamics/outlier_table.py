"""The seed outlier alarm over a grid's files: training loss (metrics.jsonl) and, with `evals=`, every metric
parc.evaluate wrote; each curve is judged against the other runs of its architecture and size
(parc.training.outliers: leave-one-out median +- k MAD-SDs at every step)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from parc.training.outliers import grouped_outliers

COLUMNS = [
    "run",
    "arch",
    "size",
    "seed",
    "series",
    "flagged",
    "max_z",
    "at_step",
    "first_step",
    "steps_over",
    "steps_compared",
]


def outlier_rows(curves, meta, series: str, k: float) -> list:
    found = grouped_outliers(curves, {run: (meta[run]["arch"], meta[run]["size"]) for run in curves}, k)
    return [
        {
            **meta[run],
            "series": series,
            "flagged": o.flagged,
            "max_z": o.max_z,
            "at_step": o.at_step,
            "first_step": o.first_step,
            "steps_over": o.steps_over,
            "steps_compared": o.steps_compared,
        }
        for run, o in sorted(found.items())
    ]


def outlier_table(runs: Sequence[str], evals: Optional[Path], k: float):
    import pandas as pd

    from parc.errors import ParcError
    from parc.store.metricsfile import METRICS_FILE, loss_curve
    from parc.study.evaluations.figures import read_results
    from parc.study.evaluations.learning_curves import find_runs, run_identity

    rows = []
    run_dirs = sorted(find_runs([r for r in runs if r]))
    meta = {}
    for run_dir in run_dirs:
        identity = run_identity(run_dir)
        meta[str(run_dir)] = {
            "run": run_dir.name,
            "arch": identity["arch"],
            "size": identity["size"],
            "seed": identity["seed"],
        }
    curves = {str(d): loss_curve(d / METRICS_FILE) for d in run_dirs}
    rows += outlier_rows(curves, meta, "training loss", k)
    if evals is not None:
        results = read_results(evals)
        results = results[pd.to_numeric(results["value"], errors="coerce").notna()]
        for (evaluation, task, metric), group in results.groupby(["evaluation", "task", "metric"], sort=True):
            curves, eval_meta = {}, {}
            for source, rows_of in group.groupby("source", sort=True):
                first = rows_of.iloc[0]
                eval_meta[source] = {
                    "run": Path(str(source)).name,
                    "arch": first["arch"],
                    "size": first["size"],
                    "seed": first["seed"],
                }
                curves[source] = dict(zip(rows_of["step"].astype(int), rows_of["value"].astype(float)))
            rows += outlier_rows(curves, eval_meta, f"{evaluation} {task} {metric}", k)
    if not rows:
        raise ParcError("no curves to compare: pass runs= with metrics.jsonl (a grid root)")
    return pd.DataFrame(rows, columns=COLUMNS)
