"""Figures of evaluation results (`python -m parc.plot evals <dir>`): metric vs step per architecture with
seed bands, one figure per evaluation, read from the tidy table parc.evaluate wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from parc.errors import ParcError
from parc.study.plots import band_figure, check_choices, group_label, save_figure


def read_results(evals_dir: Path):
    """The tidy table parc.evaluate wrote (`results.parquet`, else `results.csv`)."""
    import pandas as pd

    evals_dir = Path(evals_dir)
    for name, read in (("results.parquet", pd.read_parquet), ("results.csv", pd.read_csv)):
        if (evals_dir / name).is_file():
            return read(evals_dir / name)
    raise ParcError(
        f"no results.parquet or results.csv in {evals_dir}: pass the out= directory of "
        f"python -m parc.evaluate (default <grid root>/evals)"
    )


def eval_figures(table, band: str = "t95", x: str = "step") -> Dict[str, object]:
    """evaluation name -> figure with one panel per task/metric, one line per architecture, seed bands."""
    check_choices(band, x)
    table = table[table["value"].notna()].copy()
    if table.empty:
        raise ParcError("the results table holds no values to plot: run python -m parc.evaluate first")
    if table[x].isna().any():
        raise ParcError(f"some rows have no {x} (foreign checkpoints): plot with x=step")
    table["line"] = group_label(table)
    table["panel"] = table["task"].astype(str) + " / " + table["metric"].astype(str)
    figures = {}
    for evaluation, rows in sorted(table.groupby("evaluation"), key=lambda item: str(item[0])):
        figures[str(evaluation)] = band_figure(
            rows, x=x, y="value", hue="line", panel="panel", band=band, ylabel="value", title=str(evaluation)
        )
    return figures


def plot_evals(evals_dir: Path, out_dir: Path, band: str = "t95", x: str = "step") -> List[Path]:
    """`<out_dir>/evals-<evaluation>.png` and `.pdf` for every evaluation in the table."""
    figures = eval_figures(read_results(evals_dir), band, x)
    return [path for name, fig in figures.items() for path in save_figure(fig, Path(out_dir) / f"evals-{name}")]
