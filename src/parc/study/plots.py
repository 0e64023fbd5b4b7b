"""The study layer's one plotting module: curves over training with seed bands, saved as PNG and PDF.

Every figure of the study layer (evaluation metrics, learning curves, surprisal correlations, R^2) is a
grid of panels, each with one line per group (usually the architecture) drawn as the seed centre with a
band (`stats.band_of`: mean with 95 % t-interval, or median with IQR). The step axis is symmetric-log with
a linear part below 1, so step 0 (the initialisation) sits visibly left of step 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from parc.errors import ParcError
from parc.store.fileio import atomic_write
from parc.training.metrics import METRICS_FILE, read_metrics
from parc.study.stats import BANDS, seed_bands

X_AXES = ("step", "tokens")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: compute nodes have no display
    import matplotlib.pyplot as plt

    return plt


def set_step_axis(ax, log: bool = True, label: str = "step") -> None:
    if log:
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    ax.set_xlabel(label)


def band_figure(frame, x: str = "step", y: str = "value", hue: str = "arch", panel: Optional[str] = None,
                band: str = "t95", logx: bool = True, ylabel: Optional[str] = None, title: Optional[str] = None,
                panel_titles: Optional[Dict[str, str]] = None, ncols: int = 3, over: str = "seeds"):
    """One panel per value of `panel` (or a single panel), one line + band per value of `hue`; the band is
    over the rows of each group (`over` names them in the title: seeds, seed pairs, ...).

    `frame` holds one row per (seed, x, hue, panel); the band is computed over the rows of each group.
    """
    plt = pyplot()
    panels: List = sorted(frame[panel].unique(), key=str) if panel else [None]
    ncols = max(1, min(ncols, len(panels)))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    hues = sorted(frame[hue].unique(), key=str) if hue else [None]
    colours = {h: f"C{i}" for i, h in enumerate(hues)}
    for ax, name in zip(axes.flat, panels):
        data = frame if name is None else frame[frame[panel] == name]
        for h in hues:
            sub = data if h is None else data[data[hue] == h]
            if sub.empty:
                continue
            bands = seed_bands(sub, [x], value=y, band=band).sort_values(x)
            n = int(bands["n_seeds"].max())
            ax.plot(bands[x], bands["centre"], color=colours[h], lw=1.5, marker=".", label=f"{h} (n={n})")
            ax.fill_between(bands[x], bands["low"], bands["high"], color=colours[h], alpha=0.2, lw=0)
        set_step_axis(ax, logx, x)
        ax.set_ylabel(ylabel or y)
        if name is not None:
            ax.set_title((panel_titles or {}).get(name, str(name)), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    band_name = {"t95": f"mean, 95% t-interval over {over}", "iqr": f"median, interquartile range over {over}"}[band]
    fig.suptitle(f"{title + ' - ' if title else ''}{band_name}", fontsize=11)
    fig.tight_layout()
    return fig


def lines_figure(frame, x: str, y: str, hue: str, panel: Optional[str] = None, logx: bool = True,
                 logy: bool = False, ylabel: Optional[str] = None, title: Optional[str] = None, ncols: int = 3):
    """Plain lines (no band: one row per (panel, hue, x)), one panel per value of `panel`."""
    plt = pyplot()
    panels: List = sorted(frame[panel].unique(), key=str) if panel else [None]
    ncols = max(1, min(ncols, len(panels)))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    hues = sorted(frame[hue].unique(), key=str)
    for ax, name in zip(axes.flat, panels):
        data = frame if name is None else frame[frame[panel] == name]
        for i, h in enumerate(hues):
            sub = data[data[hue] == h].sort_values(x)
            if not sub.empty:
                ax.plot(sub[x], sub[y], color=f"C{i}", lw=1.5, marker=".", label=str(h))
        set_step_axis(ax, logx, x)
        if logy:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel or y)
        if name is not None:
            ax.set_title(str(name), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=f"C{i}", marker=".", label=str(h)) for i, h in enumerate(hues)]
    axes.flat[0].legend(handles=handles, fontsize=8)  # every line, also those the first panel lacks
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def heatmap_figure(panels: Dict[str, object], xlabel: str, ylabel: str, title: Optional[str] = None,
                   vmin: float = 0.0, vmax: float = 1.0, ncols: int = 3):
    """One heat map per panel: title -> 2-D array (rows = y, columns = x), with the value in each cell."""
    import numpy as np

    plt = pyplot()
    names = sorted(panels, key=str)
    ncols = max(1, min(ncols, len(names)))
    nrows = (len(names) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False, layout="constrained")
    image = None
    for ax, name in zip(axes.flat, names):
        matrix = np.asarray(panels[name], dtype=float)
        image = ax.imshow(matrix, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
        if matrix.size <= 144:
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.6 else "k")
        ax.set(xlabel=xlabel, ylabel=ylabel, xticks=range(matrix.shape[1]), yticks=range(matrix.shape[0]))
        ax.set_title(str(name), fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat)[:len(names)], shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_figure(fig, stem: Path, formats: Sequence[str] = ("png", "pdf")) -> List[Path]:
    """Write `stem.png` and `stem.pdf` atomically; returns the paths."""
    plt = pyplot()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    # PDF metadata carries a creation date by default; without it the same figure gives the same bytes.
    metadata = {"pdf": {"CreationDate": None}, "png": {}}
    paths = [atomic_write(stem.with_suffix(f".{fmt}"),
                          lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120, metadata=metadata.get(fmt)))
             for fmt in formats]
    plt.close(fig)
    return paths


def check_choices(band: str, x: str) -> None:
    if band not in BANDS:
        raise ParcError(f"--band {band}: choose one of {', '.join(BANDS)}")
    if x not in X_AXES:
        raise ParcError(f"--x {x}: choose one of {', '.join(X_AXES)}")


def group_label(frame) -> "object":
    """The line label: the architecture, with the size when a table holds several sizes."""
    sizes = frame["size"].fillna("").astype(str) if "size" in frame else None
    if sizes is None or sizes.nunique() <= 1:
        return frame["arch"].astype(str)
    return frame["arch"].astype(str) + " " + sizes


# --- evaluation results: python -m parc.plot evals <dir> -----------------------------------------------

def read_results(evals_dir: Path):
    """The tidy table parc.evaluate wrote (`results.parquet`, else `results.csv`)."""
    import pandas as pd

    evals_dir = Path(evals_dir)
    for name, read in (("results.parquet", pd.read_parquet), ("results.csv", pd.read_csv)):
        if (evals_dir / name).is_file():
            return read(evals_dir / name)
    raise ParcError(f"no results.parquet or results.csv in {evals_dir}: pass the out= directory of "
                    f"python -m parc.evaluate (default <grid root>/evals)")


def eval_figures(table, band: str = "t95", x: str = "step") -> Dict[str, object]:
    """evaluation name -> figure with one panel per task/metric, one line per architecture, seed bands."""
    check_choices(band, x)
    table = table[table["value"].notna()].copy()
    if table.empty:
        raise ParcError("the results table holds no values to plot: run python -m parc.evaluate first")
    if table[x].isna().any():
        raise ParcError(f"some rows have no {x} (foreign checkpoints): plot with --x step")
    table["line"] = group_label(table)
    table["panel"] = table["task"].astype(str) + " / " + table["metric"].astype(str)
    figures = {}
    for evaluation, rows in sorted(table.groupby("evaluation"), key=lambda item: str(item[0])):
        figures[str(evaluation)] = band_figure(rows, x=x, y="value", hue="line", panel="panel", band=band,
                                               ylabel="value", title=str(evaluation))
    return figures


def plot_evals(evals_dir: Path, out_dir: Path, band: str = "t95", x: str = "step") -> List[Path]:
    """`<out_dir>/evals-<evaluation>.png` and `.pdf` for every evaluation in the table."""
    figures = eval_figures(read_results(evals_dir), band, x)
    return [path for name, fig in figures.items() for path in save_figure(fig, Path(out_dir) / f"evals-{name}")]


# --- training curves: python -m parc.plot curves <runs> and python -m parc.plot <runs> --------------------

def find_runs(paths: Sequence[str]) -> Dict[Path, List[dict]]:
    """run directory -> its metrics.jsonl rows; a directory holding several runs expands to all of them."""
    runs = {}
    for given in map(Path, paths):
        candidates = [given] if (given / METRICS_FILE).exists() else sorted(p.parent for p in given.glob(f"*/{METRICS_FILE}"))
        if not candidates:
            raise ParcError(f"no {METRICS_FILE} in {given} or its subdirectories: pass a run's output_dir")
        for run in candidates:
            runs[run] = read_metrics(run / METRICS_FILE)
    return runs


def run_identity(run_dir: Path) -> Dict[str, object]:
    """arch, size, seed of a run: from the config.yaml parc.train wrote, else from its directory name."""
    from parc.study.sources import RUN_CONFIG, identity_from_config, parse_name

    identity = {}
    if (run_dir / RUN_CONFIG).is_file():
        from omegaconf import OmegaConf

        identity = identity_from_config(OmegaConf.to_container(OmegaConf.load(run_dir / RUN_CONFIG)))
    named = parse_name(run_dir.name)
    return {"arch": identity.get("arch") or named.get("arch") or run_dir.name.split("-seed")[0],
            "size": identity.get("size") or named.get("size") or "",
            "seed": identity.get("seed", int(named["seed"]) if "seed" in named else None), "run": str(run_dir)}


def learning_curves(runs: Dict[Path, List[dict]]):
    """One row per (run, logged step): arch, size, seed, run, step, tokens, loss."""
    import pandas as pd

    frames = []
    for run_dir, rows in sorted(runs.items()):
        frame = pd.DataFrame([{k: r.get(k) for k in ("step", "tokens", "loss")} for r in rows])
        for key, value in run_identity(run_dir).items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def curves_figure(curves, band: str = "t95", x: str = "step"):
    check_choices(band, x)
    curves = curves[curves["loss"].notna()].copy()
    curves["line"] = group_label(curves)
    runs = curves["run"].nunique()
    return band_figure(curves, x=x, y="loss", hue="line", band=band, ylabel="training loss (nats/token)",
                       title=f"learning curves, {runs} run(s)")


def plot_curves(paths: Sequence[str], out_dir: Path, band: str = "t95", x: str = "step") -> List[Path]:
    """`<out_dir>/curves.png` and `.pdf`: training loss of a grid, seed bands per architecture."""
    return save_figure(curves_figure(learning_curves(find_runs(paths)), band, x), Path(out_dir) / "curves")


def plot_runs(runs: Dict[Path, List[dict]], out: Path) -> Path:
    """Every run's loss and learning rate, one colour per architecture (`python -m parc.plot <runs>`)."""
    plt = pyplot()
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours: Dict[str, str] = {}
    for run_dir, rows in sorted(runs.items()):
        family = run_dir.name.split("-seed")[0]
        colour = colours.setdefault(family, f"C{len(colours)}")
        steps = [r["step"] for r in rows]
        ax_loss.plot(steps, [r["loss"] for r in rows], color=colour, alpha=0.7, lw=1)
        ax_lr.plot(steps, [r["lr"] for r in rows], color=colour, lw=1)
    handles = [plt.Line2D([], [], color=c, label=f) for f, c in colours.items()]
    ax_loss.legend(handles=handles)
    ax_loss.set(xlabel="step", ylabel="training loss (nats/token)", title=f"{len(runs)} run(s)")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="schedule")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=120))
    plt.close(fig)
    return out
