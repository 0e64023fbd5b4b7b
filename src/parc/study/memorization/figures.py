"""The memorization analyses' figures, drawn with the study layer's primitives (plots.py) and saved as PNG + PDF."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from parc.study.memorization.order import qq_points
from parc.study.plots import band_figure, lines_figure, pyplot, save_figure

PROFILE_TITLES = {
    "instantaneous": "instantaneous (t = g), x: cohort step g",
    "persistent": "persistent, x: checkpoints since g",
    "residual": "residual (last checkpoint), x: cohort step g",
}


def profile_figure(summary, out: Path) -> List[Path]:
    """Memorisation summaries, one panel each, one line per architecture with its band over seeds."""
    fig = band_figure(
        summary, x="key", y="memorisation", panel="summary", logx=False, panel_titles=PROFILE_TITLES,
        title=f"memorisation profile ({summary['units'].iloc[0]} units, -ATT of {summary['outcome'].iloc[0]})"
        if summary["outcome"].iloc[0] == "nll" else "memorisation profile (ATT)",
    )  # fmt: skip
    return save_figure(fig, out / "profile")


def qq_figure(counts, out: Path) -> List[Path]:
    """Pythia's Q-Q plot per run: block counts against Poisson(mean) quantiles; dot size and colour = how many
    (theoretical, sample) pairs coincide."""
    plt = pyplot()
    groups = list(counts.groupby(["arch", "seed"], sort=True))
    ncols = min(3, len(groups))
    nrows = (len(groups) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax, ((arch, seed), rows) in zip(axes.flat, groups):
        theoretical, sample = qq_points(rows["count"].to_numpy())
        pairs, size = np.unique(np.column_stack([theoretical, sample]), axis=0, return_counts=True)
        ax.scatter(pairs[:, 0], pairs[:, 1], s=10 + 90 * size / size.max(), c=size, cmap="viridis")
        top = max(pairs.max(), 1.0)
        ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
        ax.set(xlabel="Poisson quantiles", ylabel="memorized per block", title=f"{arch} seed {seed}")
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(f"memorized sequences per block of {int(counts['block'].iloc[0])} vs Poisson(mean)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out / "order-qq")


def counts_figure(counts, out: Path) -> List[Path]:
    fig = band_figure(counts, x="block_index", y="count", logx=False, ylabel="memorized per block", title="order")
    return save_figure(fig, out / "order-counts")


def predict_figure(table, out: Path) -> List[Path]:
    """Precision and recall of a run's own checkpoints for its end, per architecture with a band over seeds."""
    own = table[table["kind"] == "checkpoint"].melt(
        id_vars=["arch", "seed", "predictor_step"], value_vars=["precision", "recall"], var_name="metric"
    )
    fig = band_figure(own, x="predictor_step", panel="metric", ylabel="", title="predicting memorized at the end")
    return save_figure(fig, out / "predict")


def canary_figures(groups, out: Path) -> List[Path]:
    """Exposure (extrapolated) and extraction over steps, one panel per window, one line per repetition count and
    the references, bands over seeds; and exposure against the repetition count right after each window / at the
    end."""
    import pandas as pd

    several = groups["arch"].nunique() > 1  # a branch beside its parent: one panel per run label and window
    refs = groups[groups["group"] == "references"]
    parts = []
    for (arch, window), rows in groups.dropna(subset=["window"]).groupby(["arch", "window"], sort=True):
        name = f"{arch + ', ' if several else ''}window {int(window)} (last insertion {int(rows['window_end'].max())})"
        parts += [rows.assign(panel=name), refs[refs["arch"] == arch].assign(panel=name)]
    over_time = pd.concat(parts)
    over_time["line"] = over_time["group"].where(over_time["group"] == "references", over_time["group"].str.rjust(3))
    files = []
    for measure, label in (("exposure_fit", "exposure (skew-normal fit, bits)"), ("extracted", "extracted 32/32")):
        fig = band_figure(
            over_time, x="step", y=measure, hue="line", panel="panel", logx=False, ylabel=label, ncols=2,
            logy=measure == "exposure_fit",
            title=f"canaries by repetition count vs never-inserted references: {label}",
        )  # fmt: skip
        if measure == "exposure_fit":  # a t-interval over 3 seeds can reach below 0: keep the axis on the data
            for ax in fig.axes:
                ax.set_ylim(bottom=0.5)
        files += save_figure(fig, out / f"canaries-{measure.replace('_', '-')}")
    last = groups["step"].max()
    planted = groups[groups["group"] != "references"]
    moments = pd.concat(
        [
            planted[planted["step"] == planted["after"]].assign(moment="a) right after the window"),
            planted[planted["step"] == last].assign(moment=f"b) at the last checkpoint ({int(last)})"),
        ]
    )
    moments["window"] = (
        (moments["arch"] + " " if several else "") + "window " + moments["window"].astype(int).astype(str)
    )
    fig = band_figure(
        moments, x="repeats", y="exposure_fit", hue="window", panel="moment", ylabel="exposure (fit, bits)", logy=True,
        title="exposure against the repetition count",
    )  # fmt: skip
    return files + save_figure(fig, out / "canaries-repeats")


def branch_figure(table, out: Path) -> List[Path]:
    """The difference in differences of each group of units (moved later / earlier ...) over the branch's
    checkpoints, one panel per branch (one seed: no band)."""
    table = table.assign(panel=table["arch"] + " seed " + table["seed"].astype(str) + ": " + table["intervention"])
    fig = lines_figure(
        table[table["group"] != "control"], x="step", y="did", hue="group", panel="panel", logx=False,
        ylabel=f"DiD of {table['outcome'].iloc[0]} (branch - parent, vs controls)",
        title="what the intervention changed, unit by unit",
    )  # fmt: skip
    return save_figure(fig, out / "branch")
