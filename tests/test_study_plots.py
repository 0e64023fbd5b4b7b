"""`python -m parc.plot evals` and `curves`: figures that open as images, one panel per task/metric, seed bands
equal to scipy's t intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib import image
from scipy import stats as scipy_stats

from parc.study.evaluations import figures as eval_figures_module
from parc.study.evaluations import learning_curves
from parc.study.results import RESULT_COLUMNS, TidyTable

from conftest import run_cli

ARCHS, SEEDS, STEPS = ("pythia", "mamba"), (0, 1, 2), (0, 1, 2, 4, 8)
PANELS = {
    "heldout": ["demo-parc-128 / loss", "demo-parc-128 / perplexity"],
    "memorization": ["memorization / memorized", "memorization / score"],
}


def results_table(directory):
    """A grid's results laid out as parc.evaluate writes them: one part per checkpoint x evaluation."""
    rng = np.random.default_rng(0)
    table = TidyTable(directory, "results", sort_by=RESULT_COLUMNS)
    for arch in ARCHS:
        for seed in SEEDS:
            for step in STEPS:
                loss = 7.0 - np.log1p(step) * (0.5 if arch == "pythia" else 0.4) + rng.normal(0, 0.05)
                rows = []
                for evaluation, task, metrics in (
                    ("heldout", "demo-parc-128", {"loss": loss, "perplexity": np.exp(loss)}),
                    (
                        "memorization",
                        "memorization",
                        {"memorized": (step + 1) / 100 * rng.uniform(), "score": (step + 1) / 20 * rng.uniform()},
                    ),
                ):
                    rows = [
                        {
                            "arch": arch,
                            "size": "tiny",
                            "seed": seed,
                            "shard": 0,
                            "data_seed": None,
                            "step": step,
                            "tokens": step * 2048,
                            "evaluation": evaluation,
                            "task": task,
                            "metric": m,
                            "value": v,
                            "stderr": np.nan,
                            "n": 64,
                            "source": f"/runs/{arch}-seed{seed}-shard0",
                            "revision": f"checkpoint-{step}",
                            "commit": "x",
                            "parc_version": "0",
                            "lm_eval_version": None,
                            "task_version": None,
                        }
                        for m, v in metrics.items()
                    ]
                    table.write(f"{arch}{seed}{step}{evaluation}", pd.DataFrame(rows))
    table.publish()
    return pd.read_parquet(directory / "results.parquet")


def check_bands(ax, frame, x, y):
    """Each line's points are the seed means and its band the 95 % t interval, computed here with scipy."""
    for line, collection in zip(ax.get_lines(), ax.collections):
        label = line.get_label().split(" (n=")[0]
        rows = frame[frame["arch"] == label]
        for step, centre in zip(line.get_xdata(), line.get_ydata()):
            values = rows[rows[x] == step][y].to_numpy()
            low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
            assert centre == pytest.approx(values.mean())
            polygon = collection.get_paths()[0].vertices
            at = polygon[np.isclose(polygon[:, 0], step)][:, 1]
            assert min(at) == pytest.approx(low) and max(at) == pytest.approx(high)


def test_plot_evals_one_panel_per_task_metric_with_t_bands(tmp_path):
    table = results_table(tmp_path / "evals")
    figures = eval_figures_module.eval_figures(table)
    assert sorted(figures) == sorted(PANELS)
    for evaluation, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == PANELS[evaluation]
        assert all(ax.get_xscale() == "symlog" and ax.get_xlim()[0] < 0 for ax in axes)  # step 0 drawn, visibly
        task, metric = PANELS[evaluation][0].split(" / ")
        check_bands(axes[0], table[(table.task == task) & (table.metric == metric)], "step", "value")

    result = run_cli("parc.plot", "evals", str(tmp_path / "evals"), f"out={tmp_path / 'figures'}", "band=iqr")
    assert result.returncode == 0, result.stderr
    for evaluation in PANELS:
        pixels = image.imread(tmp_path / "figures" / f"evals-{evaluation}.png")
        assert pixels.shape[1] == pytest.approx(2 * 4.6 * 120, abs=2) and pixels.shape[0] == pytest.approx(
            3.6 * 120, abs=2
        )
        assert pixels[..., :3].std() > 0.05  # something is drawn
        assert (tmp_path / "figures" / f"evals-{evaluation}.pdf").read_bytes()[:5] == b"%PDF-"


def write_run(directory, arch, seed, losses):
    directory.mkdir(parents=True)
    rows = [{"step": i + 1, "tokens": (i + 1) * 2048, "loss": loss, "lr": 1e-3} for i, loss in enumerate(losses)]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_learning_curves_of_a_grid_with_seed_bands(tmp_path):
    rng = np.random.default_rng(1)
    for arch in ARCHS:
        for seed in SEEDS:
            write_run(
                tmp_path / "runs" / f"{arch}-seed{seed}-shard0",
                arch,
                seed,
                7 - np.log1p(np.arange(12)) + rng.normal(0, 0.1, 12),
            )
    curves = learning_curves.learning_curves(learning_curves.find_runs([str(tmp_path / "runs")]))
    assert sorted(curves["arch"].unique()) == sorted(ARCHS) and sorted(curves["seed"].unique()) == list(SEEDS)
    fig = learning_curves.curves_figure(curves, x="tokens")
    check_bands(fig.axes[0], curves, "tokens", "loss")

    result = run_cli("parc.plot", "curves", str(tmp_path / "runs"), f"out={tmp_path / 'figures'}")
    assert result.returncode == 0, result.stderr
    assert image.imread(tmp_path / "figures" / "curves.png").shape[1] == pytest.approx(4.6 * 120, abs=2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["evals", "{empty}"], "error: no results.parquet"),
        (["evals", "{evals}", "band=sd"], "error: band='sd'"),
        (["curves", "{empty}"], "error: no metrics.jsonl"),
    ],
)
def test_plot_bad_input(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    results_table(tmp_path / "evals") if "{evals}" in args else None
    args = [a.format(empty=tmp_path / "empty", evals=tmp_path / "evals") for a in args]
    result = run_cli("parc.plot", *args, f"out={tmp_path / 'figures'}")
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert not (tmp_path / "figures").exists()
