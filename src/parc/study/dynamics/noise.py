"""Seed noise at every checkpoint: how much of a metric's spread is seed, data shard / order, checkpoint
jitter and test items, and the smallest difference between two architectures a grid of n seeds can detect.

Model, for the runs r of one architecture at step t, on test item i (per-example values from `examples/`):

    y[r, t, i] = f(t) + sum_F a_F[level_F(r)] + u[r] + c[r, t] + b[i] + e[r, t, i]

F ranges over the factors the grid varies (seed; shard and data_seed when they take several values), u is
what is particular to one run beyond them (only separable when factors are crossed), c is checkpoint jitter
(independent between checkpoints of one run), b the item effect and e the run x item interaction. Estimates
(method of moments, each unbiased before it is clipped at 0):
- per step, a two-way ANOVA of the R x I matrix: var_item = (MS_item - MS_res) / R, var_interaction = MS_res,
  run-level variance of run means beyond the interaction noise: (MS_run - MS_res) / I;
- checkpoint jitter from neighbouring steps of each run's deviation from the mean curve of all runs (so the
  common trend f(t) is gone, however curved): r = d_t - (w d_prev + (1 - w) d_next), w from the step
  spacing, also removes a run's own locally linear drift; E[r^2] = (1 + w^2 + (1 - w)^2) (var_c + var_e / I)
  x (R - 1) / R;
- factors: main effects of a balanced full crossing of the varied factors over the run means (a factor
  confounded with another, e.g. seed = shard, is reported under the joined name), minus the jitter.
Without per-example values whose mean is the metric (perplexities, bits per byte), var_item is the results
table's stderr^2 (the item sampling variance of the mean) and the interaction is not separated. The first and
last steps have no neighbours on both sides: var_checkpoint is NaN there, and the factors keep the jitter.

The minimum detectable effect (MDE) compares the means of n runs of each architecture on the same items (so
b cancels): sigma^2 = everything that differs between runs, d from a two-sided two-sample t-test at
alpha 0.05 and 80 % power (statsmodels), MDE = d x sigma.
"""

from __future__ import annotations

from itertools import combinations
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

FACTORS = ("seed", "shard", "data_seed")
ALPHA, POWER = 0.05, 0.8
ID = ["arch", "size", "evaluation", "task", "metric", "step"]


def two_way(matrix: np.ndarray) -> Dict[str, float]:
    """ANOVA of runs x items without replication: run-level, item and interaction variance (unclipped)."""
    y = np.asarray(matrix, dtype=np.float64)
    runs, items = y.shape
    grand = y.mean()
    run_means, item_means = y.mean(axis=1), y.mean(axis=0)
    ms_run = items * ((run_means - grand) ** 2).sum() / (runs - 1) if runs > 1 else np.nan
    ms_item = runs * ((item_means - grand) ** 2).sum() / (items - 1) if items > 1 else np.nan
    resid = y - run_means[:, None] - item_means[None, :] + grand
    df = (runs - 1) * (items - 1)
    ms_res = (resid**2).sum() / df if df > 0 else np.nan
    return {"run": (ms_run - ms_res) / items, "item": (ms_item - ms_res) / runs, "interaction": ms_res}


def neighbour_residuals(steps: Sequence[int], values: Sequence[float]) -> Dict[int, float]:
    """step -> r^2 / (1 + w^2 + (1 - w)^2) at every interior step of one run's curve: estimates of the
    variance of independent per-checkpoint noise, free of a locally linear trend."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    found = {}
    for j in range(1, len(steps) - 1):
        w = (steps[j + 1] - steps[j]) / (steps[j + 1] - steps[j - 1])
        r = values[j] - (w * values[j - 1] + (1 - w) * values[j + 1])
        found[int(steps[j])] = float(r * r / (1 + w * w + (1 - w) ** 2))
    return found


def factor_effects(run_means: np.ndarray, levels: Mapping[str, Sequence]) -> Dict[str, float]:
    """Main-effect variances of the factors that vary (name -> value) over run means, plus "run" for what is
    particular to one run (the residual mean square; NaN when nothing is left to estimate it from)."""
    m = np.asarray(run_means, dtype=np.float64)
    varied = {name: [str(v) for v in vals] for name, vals in levels.items() if len(set(map(str, vals))) > 1}
    if not varied or len(m) < 2:
        return {"run": float(m.var(ddof=1)) if len(m) > 1 else np.nan}
    merged: Dict[str, List[str]] = {}  # factors that determine each other are one factor
    for name, vals in varied.items():
        for other in list(merged):
            if len(set(zip(vals, merged[other]))) == len(set(vals)) == len(set(merged[other])):
                merged[f"{other}+{name}"] = merged.pop(other)
                break
        else:
            merged[name] = vals
    names = list(merged)
    cells = set(zip(*[merged[n] for n in names]))
    sizes = [len(set(merged[n])) for n in names]
    if len(names) == 1 or len(cells) != len(m) or len(m) != int(np.prod(sizes)):
        # one factor, or not a full crossing: all run-level variance goes to the (joined) factor
        return {"+".join(names): float(m.var(ddof=1)), "run": np.nan}
    grand, fitted, effects = m.mean(), np.full_like(m, m.mean()), {}
    mean_squares = {}
    for name in names:
        labels = np.array(merged[name])
        level_means = {lv: m[labels == lv].mean() for lv in set(merged[name])}
        deviation = np.array([level_means[lv] for lv in labels]) - grand
        fitted += deviation
        mean_squares[name] = (deviation**2).sum() / (len(level_means) - 1)
    df_res = len(m) - 1 - sum(s - 1 for s in sizes)
    ms_res = ((m - fitted) ** 2).sum() / df_res if df_res > 0 else np.nan
    for name, size in zip(names, sizes):
        effects[name] = (mean_squares[name] - ms_res) / (len(m) / size)
    effects["run"] = ms_res
    return effects


def mde(sigma2_a: float, sigma2_b: float, n: int) -> float:
    """Smallest difference of means of n runs each detectable at ALPHA (two-sided) with POWER."""
    if n < 2 or not np.isfinite(sigma2_a + sigma2_b):
        return float("nan")
    from statsmodels.stats.power import TTestIndPower

    d = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=ALPHA, power=POWER, ratio=1.0)
    return float(d * np.sqrt(max(0.0, (sigma2_a + sigma2_b) / 2)))


def decompose(
    matrices: Sequence[np.ndarray],
    steps: Sequence[int],
    levels: Mapping[str, Sequence],
    item_var_of_mean: Optional[Sequence[float]] = None,
) -> List[Dict[str, float]]:
    """One group's components at every step. `matrices[t]` is runs x items at steps[t] (same runs, in the same
    order, at every step; one item column means only run means are known, then `item_var_of_mean[t]` =
    stderr^2 gives the item part); `levels` maps each factor to the value of every run."""
    matrices = [np.asarray(m, dtype=np.float64) for m in matrices]
    runs = matrices[0].shape[0]
    means = np.stack([m.mean(axis=1) for m in matrices], axis=1)  # runs x steps
    # jitter from each run's deviation from the mean curve: the common trend f(t), however curved, is gone,
    # and c - mean_r(c) has variance var_c (R - 1) / R
    deviations = means - means.mean(axis=0, keepdims=True)
    jitter_terms: Dict[int, List[float]] = {}
    for r in range(runs if runs > 1 else 0):
        for step, term in neighbour_residuals(steps, deviations[r]).items():
            jitter_terms.setdefault(step, []).append(term * runs / (runs - 1))
    rows = []
    for t, step in enumerate(steps):
        items = matrices[t].shape[1]
        parts = two_way(matrices[t]) if items > 1 and runs > 1 else None
        noise_of_mean = parts["interaction"] / items if parts else 0.0
        jitter = max(0.0, float(np.mean(jitter_terms[step])) - noise_of_mean) if step in jitter_terms else np.nan
        # checkpoint jitter and run x item noise are in every run-level estimate: they come off the residual
        # when there is one (crossed factors), else off the factor
        leftover = (0.0 if np.isnan(jitter) else jitter) + noise_of_mean
        effects = factor_effects(means[:, t], levels)
        has_residual = bool(np.isfinite(effects.get("run", np.nan)))
        row = {
            "step": int(step),
            "n_runs": runs,
            "n_items": items if parts else np.nan,
            "mean": float(means[:, t].mean()),
            "var_checkpoint": jitter,
        }
        for name, value in effects.items():
            if name != "run":
                row[f"var_{name}"] = max(0.0, float(value if has_residual else value - leftover))
        row["var_run"] = max(0.0, float(effects["run"] - leftover)) if has_residual else np.nan
        row["var_item"] = (
            max(0.0, parts["item"]) / items
            if parts
            else (float(item_var_of_mean[t]) if item_var_of_mean is not None else np.nan)
        )
        row["var_item_example"] = max(0.0, parts["item"]) if parts else np.nan
        row["var_interaction"] = max(0.0, parts["interaction"]) if parts else np.nan
        between = [
            v
            for k, v in row.items()
            if k.startswith("var_") and k not in ("var_item", "var_item_example", "var_interaction") and np.isfinite(v)
        ]
        row["var_between_runs"] = float(sum(between) + noise_of_mean)
        row["mde"] = mde(row["var_between_runs"], row["var_between_runs"], runs)
        rows.append(row)
    return rows


def pair_mde(noise, by: Sequence[str] = ("size", "evaluation", "task", "metric", "step")):
    """Every pair of architectures at every step: MDE with the two architectures' own noise, n = the
    smaller number of runs."""
    import pandas as pd

    rows = []
    for key, group in noise.groupby(list(by), sort=True, dropna=False):
        records = group.sort_values("arch").to_dict("records")
        for a, b in combinations(records, 2):
            n = int(min(a["n_runs"], b["n_runs"]))
            rows.append(
                {
                    **dict(zip(by, key)),
                    "arch_a": a["arch"],
                    "arch_b": b["arch"],
                    "n_runs": n,
                    "difference": b["mean"] - a["mean"],
                    "mde": mde(a["var_between_runs"], b["var_between_runs"], n),
                }
            )
    return pd.DataFrame(rows, columns=[*by, "arch_a", "arch_b", "n_runs", "difference", "mde"])


# --- from parc.evaluate's tables ------------------------------------------------------------------------


def example_values(evals_dir, evaluation: str, metric: str):
    """(source, step, example_id, value) of one evaluation's per-example column for `metric`, or None."""
    from pathlib import Path

    import pandas as pd

    path = Path(evals_dir) / "examples" / f"{evaluation}.parquet"
    if not path.is_file():
        return None
    base, _, filter_name = metric.partition(",")
    examples = pd.read_parquet(path)
    if base not in examples.columns or f"{base}_weight" in examples.columns:
        return None  # no per-example values, or (log-likelihood, weight) pairs of a perplexity: not a mean
    if filter_name and "filter" in examples.columns:
        examples = examples[examples["filter"] == filter_name]
    return examples


def group_matrices(rows, examples, task: str, metric: str):
    """(sources, steps, matrices, stderr^2) of one group: runs x items per step, over the steps every run has."""
    sources = sorted(rows["source"].unique())
    by_run = {s: set(rows.loc[rows["source"] == s, "step"]) for s in sources}
    steps = sorted(set.intersection(*by_run.values()))
    base = metric.partition(",")[0]
    matrices, stderr2 = [], []
    for step in steps:
        at = rows[rows["step"] == step].set_index("source")
        errors = at.loc[sources, "stderr"].astype(float).to_numpy() ** 2
        stderr2.append(float(errors[np.isfinite(errors)].mean()) if np.isfinite(errors).any() else np.nan)
        matrix = None
        if examples is not None:
            here = examples[(examples["step"] == step) & (examples["task"] == task) & examples["source"].isin(sources)]
            table = here.pivot_table(index="source", columns="example_id", values=base, aggfunc="first")
            table = table.reindex(sources).dropna(axis=1)
            values = at.loc[sources, "value"].to_numpy(float)
            # only where the metric is the mean of its per-example values (held-out loss, accuracies)
            if table.shape[1] > 1 and np.allclose(table.to_numpy(float).mean(axis=1), values, rtol=1e-6, atol=1e-9):
                matrix = table.to_numpy(dtype=np.float64)
        matrices.append(matrix if matrix is not None else at.loc[sources, "value"].to_numpy(float)[:, None])
    if any(m.shape[1] == 1 for m in matrices):  # per-example values missing somewhere: means only, everywhere
        matrices = [
            np.asarray(rows[rows["step"] == s].set_index("source").loc[sources, "value"], float)[:, None] for s in steps
        ]
    return sources, steps, matrices, stderr2


def noise_table(evals_dir):
    """(noise, pairs): components per (arch, size, evaluation, task, metric, step), and every architecture
    pair's MDE; from `<evals_dir>/results.parquet` and `examples/`."""
    import pandas as pd

    from parc.errors import ParcError
    from parc.study.evaluations.figures import read_results

    results = read_results(evals_dir)
    results = results[pd.to_numeric(results["value"], errors="coerce").notna()]
    out = []
    keys = ["arch", "size", "evaluation", "task", "metric"]
    for key, rows in results.groupby(keys, sort=True, dropna=False):
        if rows["source"].nunique() < 2:
            continue
        examples = example_values(evals_dir, key[2], key[4])
        sources, steps, matrices, stderr2 = group_matrices(rows, examples, key[3], key[4])
        if not steps:
            continue
        first = rows.drop_duplicates("source").set_index("source").loc[sources]
        levels = {f: first[f].tolist() for f in FACTORS if f in first}
        for row in decompose(matrices, steps, levels, stderr2):
            out.append({**dict(zip(keys, key)), **row})
    if not out:
        raise ParcError(
            f"no metric in {evals_dir} has two or more runs of one architecture at common steps: "
            "evaluate several seeds (python -m parc.evaluate runs=<grid root>)"
        )
    noise = pd.DataFrame(out)
    columns = [c for c in ID + ["n_runs", "n_items", "mean", "mde"] if c in noise] + sorted(
        c for c in noise if c.startswith("var_")
    )
    noise = noise[columns].sort_values(ID, kind="mergesort").reset_index(drop=True)
    return noise, pair_mde(noise)
