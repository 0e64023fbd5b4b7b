"""The figures of parc.dynamics, all drawn by parc.study.plots: noise components and MDE over steps, CKA
curves and heat maps, effective rank, and per-layer weight change."""

from __future__ import annotations

from pathlib import Path
from typing import List

from parc.study.plots import band_figure, heatmap_figure, lines_figure, save_figure


def noise_figures(noise, pairs, out: Path) -> List[Path]:
    """noise.png: each component's SD (sqrt of its variance, the item and run x item parts as they enter a
    run's mean) over steps, one panel per arch x metric;
    noise-mde.png: the MDE of every architecture pair next to the observed difference."""
    import pandas as pd

    noise = noise.copy()
    if "var_interaction" in noise:  # on the scale of the others: its share of a run's mean
        noise["var_interaction (of the mean)"] = noise["var_interaction"] / noise["n_items"]
    noise = noise.rename(columns={"var_item": "var_item (of the mean)"})
    parts = [
        c
        for c in noise.columns
        if c.startswith("var_") and c not in ("var_item_example", "var_between_runs", "var_interaction")
    ]
    long = noise.melt(
        id_vars=["arch", "size", "evaluation", "task", "metric", "step"],
        value_vars=parts,
        var_name="component",
        value_name="variance",
    ).dropna(subset=["variance"])
    long["sd"] = long["variance"].clip(lower=0) ** 0.5
    long["component"] = long["component"].str.slice(4)
    long["panel"] = long["arch"].astype(str) + " " + long["task"].astype(str) + " / " + long["metric"].astype(str)
    paths = save_figure(
        lines_figure(
            long,
            "step",
            "sd",
            "component",
            "panel",
            ylabel="SD of the metric",
            title="seed noise: components (SD) per checkpoint",
        ),
        out / "noise",
    )
    if not pairs.empty:
        frames = []
        for _, row in pairs.iterrows():
            label = f"{row['arch_a']} vs {row['arch_b']}"
            panel = f"{label}: {row['task']} / {row['metric']}"
            frames += [
                {
                    "panel": panel,
                    "step": row["step"],
                    "line": f"MDE (80% power, n={row['n_runs']})",
                    "value": row["mde"],
                },
                {"panel": panel, "step": row["step"], "line": "|observed difference|", "value": abs(row["difference"])},
            ]
        paths += save_figure(
            lines_figure(
                pd.DataFrame(frames),
                "step",
                "value",
                "line",
                "panel",
                ylabel="metric units",
                title="minimum detectable effect",
            ),
            out / "noise-mde",
        )
    return paths


def similarity_figures(table, out: Path) -> List[Path]:
    """similarity-seeds.png / similarity-steps.png: CKA per layer over steps (band over pairs);
    similarity-archs.png: layer x layer heat maps at the last common step; effective-rank.png."""
    paths: List[Path] = []
    cka = table[table["metric"] == "cka"].copy()
    cka["layer"] = "layer " + cka["layer_a"].astype(str)
    for kind, what, over in (
        ("seeds", "CKA between seeds", "seed pairs"),
        ("steps", "CKA with the run's last checkpoint", "seeds"),
    ):
        rows = cka[cka["kind"] == kind]
        if not rows.empty:
            rows = rows.rename(columns={"step_a": "step"})
            paths += save_figure(
                band_figure(
                    rows,
                    x="step",
                    y="value",
                    hue="layer",
                    panel="arch_a",
                    over=over,
                    ylabel="debiased linear CKA",
                    title=what,
                ),
                out / f"similarity-{kind}",
            )
    archs = cka[cka["kind"] == "archs"]
    if not archs.empty:
        last = archs["step_a"].max()
        panels = {}
        for (a, b), rows in archs[archs["step_a"] == last].groupby(["arch_a", "arch_b"], sort=True):
            matrix = rows.pivot_table(index="layer_b", columns="layer_a", values="value", aggfunc="mean").sort_index()
            pairs = rows[["a", "b"]].drop_duplicates().shape[0]
            panels[f"{a} (x) vs {b} (y), mean of {pairs} pair(s)"] = matrix.to_numpy()
        paths += save_figure(
            heatmap_figure(panels, xlabel="layer", ylabel="layer", title=f"CKA between architectures, step {last}"),
            out / "similarity-archs",
        )
    ranks = table[table["metric"] == "effective_rank"].copy()
    if not ranks.empty:
        ranks["layer"] = "layer " + ranks["layer_a"].astype(str)
        ranks = ranks.rename(columns={"step_a": "step", "arch_a": "arch"})
        paths += save_figure(
            band_figure(
                ranks,
                x="step",
                y="value",
                hue="arch",
                panel="layer",
                ylabel="effective rank",
                title="effective rank of hidden states",
            ),
            out / "effective-rank",
        )
    return paths


def diffs_figure(rows, out: Path, name: str) -> List[Path]:
    """diffs-<name>.png: relative change from the previous revision and from init, one line per layer group."""
    import pandas as pd

    long = pd.concat(
        [
            rows.assign(panel="||W_t - W_t-1|| / ||W_t-1||", value=rows["rel_prev"]),
            rows.assign(panel="||W_t - W_0|| / ||W_0||", value=rows["rel_init"]),
        ]
    )
    long = long.dropna(subset=["value"])
    return save_figure(
        lines_figure(
            long, "step", "value", "group", "panel", ylabel="relative change", title=f"weight change per layer: {name}"
        ),
        out / f"diffs-{name}",
    )
