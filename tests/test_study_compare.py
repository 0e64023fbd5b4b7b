"""`python -m parc.compare`: the difference of two selections with bootstrap intervals over seeds (and seeds x
examples), checked against a straightforward re-implementation on tables with known structure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from parc.study.evaluations.compare import compare

from conftest import run_cli

EXAMPLES = 40


def write_evals(directory, means, spread=0.02, seeds=5, example_noise=0.3, mirror=False):
    """results.parquet + examples/memorization.parquet: per run, per-example scores around the arch's mean.
    `mirror`: the second architecture's runs are the first's, in reverse seed order (no difference at all)."""
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, example_noise, EXAMPLES)  # shared by every run: the same examples
    rows, examples, first = [], [], {}
    for arch, mean in means.items():
        for seed in range(seeds):
            run_mean = mean + rng.normal(0, spread)
            for step in (10, 20):
                scores = run_mean + difficulty + rng.normal(0, 0.05, EXAMPLES) + step / 100
                if mirror and first.get((seeds - 1 - seed, step)) is not None and arch != next(iter(means)):
                    scores = first[(seeds - 1 - seed, step)]
                first.setdefault((seed, step), scores)
                identity = {
                    "arch": arch,
                    "size": "tiny",
                    "seed": seed,
                    "shard": 0,
                    "data_seed": None,
                    "step": step,
                    "source": f"/runs/{arch}-seed{seed}",
                    "revision": f"checkpoint-{step}",
                    "commit": "c",
                }
                rows.append(
                    {
                        **identity,
                        "tokens": step * 10,
                        "evaluation": "memorization",
                        "task": "memorization",
                        "metric": "score",
                        "value": scores.mean(),
                        "stderr": np.nan,
                        "n": EXAMPLES,
                    }
                )
                examples.append(
                    pd.DataFrame(
                        {**identity, "example_id": np.arange(EXAMPLES), "task": "memorization", "score": scores}
                    )
                )
    (directory / "examples").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(directory / "results.parquet")
    pd.concat(examples).to_parquet(directory / "examples" / "memorization.parquet")
    return pd.DataFrame(rows), pd.concat(examples)


def reference_bootstrap(a_runs, b_runs, samples, seed, with_examples, paired=False):
    """Plain loops: a_runs/b_runs are lists of per-example score lists (one per run); draw order as documented."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        ia = [int(i) for i in rng.integers(0, len(a_runs), len(a_runs))]
        ib = ia if paired else [int(i) for i in rng.integers(0, len(b_runs), len(b_runs))]
        if with_examples:
            ex = [int(i) for i in rng.integers(0, EXAMPLES, EXAMPLES)]
            mean_a = sum(a_runs[i][e] for i in ia for e in ex) / (len(ia) * len(ex))
            mean_b = sum(b_runs[i][e] for i in ib for e in ex) / (len(ib) * len(ex))
        else:
            mean_a = sum(sum(a_runs[i]) / EXAMPLES for i in ia) / len(ia)
            mean_b = sum(sum(b_runs[i]) / EXAMPLES for i in ib) / len(ib)
        draws.append(mean_a - mean_b)
    draws.sort()
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def runs_of(examples, arch, step):
    chosen = examples[(examples.arch == arch) & (examples.step == step)].sort_values(["seed", "example_id"])
    return [list(group.score) for _, group in chosen.groupby("seed")]


def test_difference_and_intervals_equal_a_direct_computation_and_exclude_zero(tmp_path):
    table, examples = write_evals(tmp_path, {"pythia": 0.5, "mamba": 0.3})
    result = compare(tmp_path, "score", {"arch": "pythia"}, {"arch": "mamba"}, step=20, samples=300, seed=7)
    a, b = runs_of(examples, "pythia", 20), runs_of(examples, "mamba", 20)
    assert result["difference"] == pytest.approx(np.mean([np.mean(r) for r in a]) - np.mean([np.mean(r) for r in b]))
    assert result["ci_seeds"] == pytest.approx(reference_bootstrap(a, b, 300, 7, False))
    assert result["ci_seeds_examples"] == pytest.approx(reference_bootstrap(a, b, 300, 7, True))
    assert result["ci_seeds"][0] > 0 and result["ci_seeds_examples"][0] > 0  # 0.2 apart, seeds spread 0.02
    # Example difficulty (sd 0.3 over 40 examples) is shared, so it cancels and the intervals stay close.
    assert result["ci_seeds_examples"][1] - result["ci_seeds_examples"][0] < 0.2


def test_equal_architectures_give_an_interval_that_includes_zero_and_steps_are_paired(tmp_path):
    table, examples = write_evals(tmp_path, {"pythia": 0.4, "mamba": 0.4}, spread=0.05, mirror=True)
    result = compare(tmp_path, "score", {"arch": "pythia"}, {"arch": "mamba"}, step=10, samples=300, seed=1)
    assert result["ci_seeds"][0] < 0 < result["ci_seeds"][1]
    assert result["ci_seeds_examples"][0] < 0 < result["ci_seeds_examples"][1]
    # Two steps of the same runs: runs drawn once for both sides (paired); the +0.1 step effect shows.
    steps = compare(tmp_path, "score", {"arch": "mamba", "step": "20"}, {"arch": "mamba", "step": "10"}, samples=200)
    a, b = runs_of(examples, "mamba", 20), runs_of(examples, "mamba", 10)
    assert steps["paired"] and steps["ci_seeds"] == pytest.approx(reference_bootstrap(a, b, 200, 0, False, paired=True))
    assert steps["ci_seeds"][0] > 0
    again = compare(tmp_path, "score", {"arch": "mamba", "step": "20"}, {"arch": "mamba", "step": "10"}, samples=200)
    assert again == steps  # deterministic


def test_cli_prints_both_intervals_and_refuses_bad_input(tmp_path):
    write_evals(tmp_path, {"pythia": 0.5, "mamba": 0.3})
    ok = run_cli(
        "parc.compare",
        str(tmp_path),
        "metric=score",
        "a=arch=pythia",
        "b=arch=mamba",
        "step=10",
        "samples=100",
        "json=true",
    )
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) >= {"difference", "ci_seeds", "ci_seeds_examples"}
    for args, message in (
        (["metric=acc", "a=arch=pythia", "b=arch=mamba"], "error: unknown metric 'acc'"),
        (["metric=score", "a=arch=rwkv", "b=arch=mamba", "step=10"], "error: a=step=10,arch=rwkv selects no rows"),
        (["metric=score", "a=arch=pythia", "b=arch=mamba"], "error: a= spans steps"),
    ):
        bad = run_cli("parc.compare", str(tmp_path), *args)
        assert bad.returncode == 2 and bad.stderr.startswith(message) and "Traceback" not in bad.stderr, bad.stderr
