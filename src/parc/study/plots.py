"""The study layer's one plotting module: curves over training with seed bands, saved as PNG and PDF.

Every figure of the study layer (evaluation metrics, learning curves, surprisal correlations, R^2) is a
grid of panels, each with one line per group (usually the architecture) drawn as the seed centre with a
band (`stats.band_of`: mean with 95 % t-interval, or median with IQR). The step axis is symmetric-log with
a linear part below 1, so step 0 (the initialisation) sits visibly left of step 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from parc.fileio import atomic_write
from parc.study.stats import seed_bands


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
                panel_titles: Optional[Dict[str, str]] = None, ncols: int = 3):
    """One panel per value of `panel` (or a single panel), one line + band per value of `hue`.

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
    band_name = {"t95": "mean, 95% t-interval over seeds", "iqr": "median, interquartile range over seeds"}[band]
    fig.suptitle(f"{title + ' - ' if title else ''}{band_name}", fontsize=11)
    fig.tight_layout()
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
