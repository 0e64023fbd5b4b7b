"""parc.dynamics noise: the variance components recovered from a direct simulation with known components,
through the same tables parc.evaluate writes (results.parquet + examples/), and the MDE against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from parc.study.dynamics.noise import decompose, factor_effects, mde, noise_table, two_way

STEPS = [0, 10, 20, 40, 60, 80, 100]


def simulate(rng, runs, items, sd, seeds, shards, trend=lambda s: 3.0 - 0.01 * np.asarray(s, float)):
    """y[r, t, i] = f(t) + a_seed + d_shard + u_run + c[r, t] + b_i + e[r, t, i], per step a runs x items matrix."""
    a = rng.normal(0, sd["seed"], max(seeds) + 1)[seeds]
    d = rng.normal(0, sd.get("shard", 0.0), max(shards) + 1)[shards]
    u = rng.normal(0, sd.get("run", 0.0), runs)
    b = rng.normal(0, sd["item"], items)
    matrices = []
    for step in STEPS:
        c = rng.normal(0, sd["checkpoint"], runs)
        e = rng.normal(0, sd["interaction"], (runs, items))
        matrices.append(trend(step) + (a + d + u + c)[:, None] + b[None, :] + e)
    return matrices


def test_two_way_anova_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(5, 7))
    runs, items = y.shape
    sst = ((y - y.mean()) ** 2).sum()
    ss_run = items * ((y.mean(1) - y.mean()) ** 2).sum()
    ss_item = runs * ((y.mean(0) - y.mean()) ** 2).sum()
    ms_res = (sst - ss_run - ss_item) / ((runs - 1) * (items - 1))
    got = two_way(y)
    assert got["interaction"] == pytest.approx(ms_res)
    assert got["run"] == pytest.approx((ss_run / (runs - 1) - ms_res) / items)
    assert got["item"] == pytest.approx((ss_item / (items - 1) - ms_res) / runs)


def test_seed_checkpoint_item_components_of_a_simulation_are_recovered(tmp_path):
    """400 seeds x 300 items x 7 checkpoints, written as parc.evaluate's tables, read back by noise_table."""
    rng = np.random.default_rng(0)
    runs, items = 400, 300
    sd = {"seed": 0.10, "checkpoint": 0.05, "item": 0.80, "interaction": 0.30}
    matrices = simulate(rng, runs, items, sd, seeds=np.arange(runs), shards=np.zeros(runs, int))
    results, examples = [], []
    for step, matrix in zip(STEPS, matrices):
        for r in range(runs):
            identity = {
                "arch": "pythia",
                "size": "tiny",
                "seed": r,
                "shard": 0,
                "data_seed": 0,
                "step": step,
                "source": f"/runs/pythia-seed{r}-shard0",
                "evaluation": "heldout",
                "task": "demo",
            }
            results.append(
                {
                    **identity,
                    "metric": "loss",
                    "value": matrix[r].mean(),
                    "stderr": matrix[r].std(ddof=1) / np.sqrt(items),
                }
            )
            examples.append(pd.DataFrame({**identity, "example_id": np.arange(items), "loss": matrix[r]}))
    pd.DataFrame(results).to_parquet(tmp_path / "results.parquet")
    (tmp_path / "examples").mkdir()
    pd.concat(examples).to_parquet(tmp_path / "examples" / "heldout.parquet")

    noise, pairs = noise_table(tmp_path)
    assert list(noise["step"]) == STEPS and set(noise["n_runs"]) == {runs} and pairs.empty
    interior = noise[noise["step"].isin(STEPS[1:-1])]
    assert interior["var_checkpoint"].mean() == pytest.approx(sd["checkpoint"] ** 2, rel=0.2)
    assert interior["var_seed"].mean() == pytest.approx(sd["seed"] ** 2, rel=0.2)
    assert noise["var_item_example"].mean() == pytest.approx(sd["item"] ** 2, rel=0.2)
    assert noise["var_interaction"].mean() == pytest.approx(sd["interaction"] ** 2, rel=0.05)
    assert noise["var_item"].mean() == pytest.approx(sd["item"] ** 2 / items, rel=0.2)
    assert noise["mean"].tolist() == pytest.approx([np.mean(m) for m in matrices])


def test_crossed_seed_and_shard_are_separated_on_average_over_replicates():
    """8 seeds x 8 shards, every combination one run: the estimators are unbiased (mean over 60 replicates)."""
    rng = np.random.default_rng(3)
    seeds, shards = np.repeat(np.arange(8), 8), np.tile(np.arange(8), 8)
    sd = {"seed": 0.2, "shard": 0.3, "run": 0.1, "checkpoint": 0.05, "item": 0.5, "interaction": 0.2}
    estimates = []
    for _ in range(60):
        matrices = simulate(rng, 64, 40, sd, seeds, shards)
        estimates += decompose(matrices, STEPS, {"seed": seeds, "shard": shards, "data_seed": [0] * 64})[1:-1]
    got = pd.DataFrame(estimates)
    assert got["var_seed"].mean() == pytest.approx(sd["seed"] ** 2, rel=0.2)
    assert got["var_shard"].mean() == pytest.approx(sd["shard"] ** 2, rel=0.2)
    assert got["var_run"].mean() == pytest.approx(sd["run"] ** 2, rel=0.25)
    assert got["var_checkpoint"].mean() == pytest.approx(sd["checkpoint"] ** 2, rel=0.2)
    assert "var_data_seed" not in got  # not varied: not reported


def test_a_factor_confounded_with_the_seed_is_reported_under_the_joined_name():
    effects = factor_effects(np.array([1.0, 2.0, 4.0]), {"seed": [0, 1, 2], "shard": [5, 6, 7]})
    assert set(effects) == {"seed+shard", "run"} and effects["seed+shard"] == pytest.approx(np.var([1, 2, 4], ddof=1))


def test_mde_has_80_percent_power_by_scipy_noncentral_t():
    from scipy import stats

    n, sigma2 = 6, 0.04
    delta = mde(sigma2, sigma2, n)
    df, nc = 2 * n - 2, delta / np.sqrt(2 * sigma2 / n)
    crit = stats.t.ppf(1 - 0.025, df)
    power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert np.isnan(mde(sigma2, sigma2, 1))
