"""The behavioural-phase figures, drawn with the study layer's one plotting module (seed bands, PNG + PDF).

phases.png     Pearson r (train split) vs step, one line per n-gram order; one row per architecture, the
               raw correlations (control `none`, with -num_tokens drawn too) beside the partial
               correlations given num_tokens and those on single-token targets
r2.png         R^2 of the regressions vs step, on train and on val, one panel per architecture
agreement.png  Pearson r between the surprisals of pairs of runs vs step, one line per pair of
               architectures (the band spans the pairs of seeds)
agreement_final.png  the runs x runs correlation matrix at the last step
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from parc.study.plots import band_figure, pyplot, save_figure

FORMULA_LABELS = {
    "lm ~ gram1 + gram5": "1-gram + 5-gram",
    "lm ~ gram1 + gram5 + context_similarity + context_similarity_weighted": "+ context similarity",
}


CONTROL_TITLES = {"none": "no control", "partial": "partial r given num_tokens", "single_token": "single-token targets"}


def phase_figure(correlations):
    train = correlations[correlations["split"] == "train"]
    if "control" not in train.columns:
        train = train.assign(control="none")
    order = {control: i for i, control in enumerate(CONTROL_TITLES)}
    train = train[train["control"].isin(order)]
    panels = {
        f"{arch} {order[control]}": f"{arch}: {CONTROL_TITLES[control]}"
        for arch, control in zip(train["arch"], train["control"])
    }
    train = train.assign(panel=[f"{arch} {order[control]}" for arch, control in zip(train["arch"], train["control"])])
    return band_figure(
        train,
        y="pearson_r",
        hue="predictor",
        panel="panel",
        panel_titles=panels,
        ncols=train["control"].nunique(),
        ylabel="Pearson r with LM log-prob",
        title="Correlation of LM and n-gram log-probabilities (train split)",
    )


def r2_figure(regressions):
    import pandas as pd

    long = pd.concat(
        [
            regressions.assign(
                r2=regressions[f"r2_{split}"],
                fit=regressions["formula"].map(lambda f: FORMULA_LABELS.get(f, f)) + f" ({split})",
            )
            for split in ("train", "val")
        ],
        ignore_index=True,
    )
    long = long[np.isfinite(long["r2"])]
    return band_figure(long, y="r2", hue="fit", panel="arch", ylabel="R^2", title="OLS fit of LM log-prob")


def agreement_figure(agreement):
    pairs = agreement.assign(pair=[" ~ ".join(sorted(p)) for p in zip(agreement["arch_a"], agreement["arch_b"])])
    return band_figure(
        pairs, y="pearson_r", hue="pair", ylabel="Pearson r between surprisals", title="Agreement between runs"
    )


def agreement_matrix_figure(agreement):
    plt = pyplot()
    last = agreement[agreement["step"] == agreement["step"].max()]
    runs = sorted(set(last["run_a"]) | set(last["run_b"]))
    position = {run: i for i, run in enumerate(runs)}
    matrix = np.eye(len(runs))
    for row in last.itertuples():
        matrix[position[row.run_a], position[row.run_b]] = matrix[position[row.run_b], position[row.run_a]] = (
            row.pearson_r
        )
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(runs), 0.8 + 0.5 * len(runs)))
    image = ax.imshow(matrix, vmin=min(0.0, float(matrix.min())), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(runs)), runs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(runs)), runs, fontsize=7)
    ax.set_title(f"surprisal correlation, step {int(last['step'].max())}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def draw_all(out: Path, correlations, regressions, agreement) -> Dict[str, List[Path]]:
    figures = {
        "phases": phase_figure(correlations) if len(correlations) else None,
        "r2": r2_figure(regressions) if len(regressions) else None,
        "agreement": agreement_figure(agreement) if len(agreement) else None,
        "agreement_final": agreement_matrix_figure(agreement) if len(agreement) else None,
    }
    return {name: save_figure(fig, Path(out) / name) for name, fig in figures.items() if fig is not None}
