"""The study layer's drawing primitives: curves over training with seed bands, saved as PNG and PDF.

Every figure of the study layer (evaluation metrics in evaluations/figures.py, learning curves in
evaluations/learning_curves.py, surprisal correlations and R^2 in phases/figures.py, parc.dynamics' in
dynamics/figures.py) is drawn here: a grid of panels, each with one line per group (usually the architecture) drawn as the seed centre with a
band (`stats.band_of`: mean with 95 % t-interval, or median with IQR). The step axis is symmetric-log with
a linear part below 1, so step 0 (the initialisation) sits visibly left of step 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from parc.errors import ParcError
from parc.store.fileio import atomic_write
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


def band_figure(
    frame,
    x: str = "step",
    y: str = "value",
    hue: str = "arch",
    panel: Optional[str] = None,
    band: str = "t95",
    logx: bool = True,
    ylabel: Optional[str] = None,
    title: Optional[str] = None,
    panel_titles: Optional[Dict[str, str]] = None,
    ncols: int = 3,
    over: str = "seeds",
    logy: bool = False,
):
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
        if logy:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel or y)
        if name is not None:
            ax.set_title((panel_titles or {}).get(name, str(name)), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    band_name = {"t95": f"mean, 95% t-interval over {over}", "iqr": f"median, interquartile range over {over}"}[band]
    fig.suptitle(f"{title + ' - ' if title else ''}{band_name}", fontsize=11)
    fig.tight_layout()
    return fig


def lines_figure(
    frame,
    x: str,
    y: str,
    hue: str,
    panel: Optional[str] = None,
    logx: bool = True,
    logy: bool = False,
    ylabel: Optional[str] = None,
    title: Optional[str] = None,
    ncols: int = 3,
):
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
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=f"C{i}", marker=".", label=str(h)) for i, h in enumerate(hues)]
    axes.flat[0].legend(handles=handles, fontsize=8)  # every line, also those the first panel lacks
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def heatmap_figure(
    panels: Dict[str, object],
    xlabel: str,
    ylabel: str,
    title: Optional[str] = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    ncols: int = 3,
):
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
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat)[: len(names)], shrink=0.8)
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
    paths = [
        atomic_write(
            stem.with_suffix(f".{fmt}"),
            lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120, metadata=metadata.get(fmt)),
        )
        for fmt in formats
    ]
    plt.close(fig)
    return paths


def check_choices(band: str, x: str) -> None:
    if band not in BANDS:
        raise ParcError(f"band={band}: choose one of {', '.join(BANDS)}")
    if x not in X_AXES:
        raise ParcError(f"x={x}: choose one of {', '.join(X_AXES)}")


def group_label(frame) -> "object":
    """The line label: the architecture, with the size when a table holds several sizes, and the intervention
    (block_swap@1000) of a branch, so that a branch never pools with its parent."""
    label = frame["arch"].astype(str)
    for column in ("size", "intervention"):
        values = frame[column].fillna("").astype(str) if column in frame else None
        if values is not None and values.nunique() > 1:
            label = label + (" " + values).where(values != "", "")
    return label
