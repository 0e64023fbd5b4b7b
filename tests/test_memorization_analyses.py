"""parc.memorization's estimators against independent computations on synthetic panels.

ATT(g, t): a panel Y_it = a_i + b_t + tau_{g,t} 1[t >= g] + noise with known tau; a hand 2x2 difference of
group means; the `differences` package's ATTgt (test-only dependency, skipped when absent). Order tests: their
rejection rate on homogeneous Poisson series and their power against a +-20 % linear trend. Predictability: a
hand confusion count. The command end to end on a written panel, and its one-line refusal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from parc.study.memorization.did import att_gt, summaries, wide
from parc.study.memorization.order import dispersion_test, ks_test, order_tables, qq_points, trend_test
from parc.study.memorization.panel import check_panel, cohorts
from parc.study.memorization.predict import predict_table
from parc.study.memorization.profile import profile_tables

STEPS = [0, 100, 200, 300, 400, 500]


def tau(g, t):
    """The known effect: -0.5 at t = g, fading by 0.05 per checkpoint after (memorisation 0.5 -> 0.3)."""
    return -0.5 + 0.05 * (STEPS.index(t) - STEPS.index(g)) if t >= g else 0.0


def synthetic_panel(seed=0, per_cohort=150, controls=300, noise=0.05, arch="pythia"):
    """Long panel rows: train units with treat_step inside each checkpoint interval, never-trained controls."""
    rng = np.random.default_rng(seed)
    b = rng.normal(0, 1, len(STEPS))
    rows, unit = [], 0
    for g in STEPS[1:] + [None]:
        for _ in range(per_cohort if g is not None else controls):
            a = rng.normal(5, 1)
            treat = None if g is None else g - int(rng.integers(0, 100))  # consumed in (g - 100, g]
            for j, t in enumerate(STEPS):
                y = a + b[j] + (tau(g, t) if g is not None else 0.0) + rng.normal(0, noise)
                rows.append(
                    {"example_id": unit if g is not None else -1 - unit, "unit_kind": "train" if g else "control"}
                    | {"treat_step": treat, "step": t, "nll": y, "arch": arch, "seed": seed, "score32": 0.0}
                )
            unit += 1
    frame = pd.DataFrame(rows)
    frame["treat_step"] = frame["treat_step"].astype(float)
    frame["cohort"] = cohorts(frame["treat_step"], STEPS)
    return frame


def test_cohort_is_the_first_checkpoint_at_or_after_the_step():
    assert list(cohorts([1, 100, 101, np.nan, 501], STEPS)[:3]) == [100, 100, 200]
    assert np.isnan(cohorts([np.nan, 501], STEPS)).all()


def test_att_recovers_known_effects_and_pre_periods_are_zero():
    cells, draws = att_gt(wide(synthetic_panel(), "nll"), "never", samples=50)
    post = cells[cells["event"] >= 0]
    truth = np.array([tau(g, t) for g, t in zip(post["g"], post["t"])])
    assert np.abs(post["att"].to_numpy() - truth).max() < 0.03
    assert np.abs(cells[cells["event"] < 0]["att"]).max() < 0.03
    assert draws.shape == (50, len(cells)) and np.all(draws.std(axis=0) > 0)
    cohort_100 = cells[(cells["g"] == 100) & (cells["t"] == 100)].index[0]
    low, high = np.percentile(draws[:, cohort_100], [2.5, 97.5])
    assert low < -0.5 < high
    table = summaries(cells, draws)
    persistent = table[table["summary"] == "persistent"].set_index("key")["att"]
    assert np.allclose(persistent.loc[[0.0, 1.0, 2.0]], [-0.5, -0.45, -0.4], atol=0.02)


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_att_equals_a_hand_two_by_two(control):
    panel = synthetic_panel(seed=1, per_cohort=20, controls=30, noise=0.3)
    cells, _ = att_gt(wide(panel, "nll"), control)
    g, t, base = 300.0, 400.0, 200.0
    mean = panel.pivot(index="example_id", columns="step", values="nll")
    cohort = panel.groupby("example_id")["cohort"].first().reindex(mean.index).fillna(np.inf)
    treated = mean[cohort == g]
    pool = mean[cohort == np.inf] if control == "never" else mean[(cohort > t) & (cohort != g)]
    hand = (treated[t].mean() - treated[base].mean()) - (pool[t].mean() - pool[base].mean())
    cell = cells[(cells["g"] == g) & (cells["t"] == t)].iloc[0]
    assert cell["base"] == base and cell["att"] == pytest.approx(hand, abs=1e-12)
    assert cell["n_control"] == len(pool)


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_att_equals_the_differences_package(control):
    differences = pytest.importorskip("differences")
    panel = synthetic_panel(seed=2, per_cohort=25, controls=40, noise=0.3)
    cells, _ = att_gt(wide(panel, "nll"), control)
    data = panel.set_index(["example_id", "step"])[["nll", "cohort"]]
    model = differences.ATTgt(data=data, cohort_column="cohort")
    model.fit(formula="nll", control_group={"never": "never_treated", "notyet": "not_yet_treated"}[control])
    result = model.results()
    theirs = result[[c for c in result.columns if c[-1] == "ATT"][0]]
    theirs = theirs.reset_index().set_index(["cohort", "time"]).iloc[:, -1]
    ours = cells.set_index(["g", "t"])["att"]
    common = ours.index.intersection(theirs.index)
    assert len(common) == len(ours) == len(theirs)
    assert np.allclose(ours.loc[common], theirs.loc[common], atol=1e-8)


def test_profile_memorisation_is_minus_att_and_has_seed_rows():
    frame = check_panel(pd.concat([synthetic_panel(seed=s, per_cohort=40, controls=60) for s in (0, 1)]))
    cells, summary = profile_tables(frame, samples=20)
    assert set(cells["seed"]) == {0, 1}
    assert np.allclose(cells["memorisation"], -cells["att"])
    assert (cells["memorisation_low"] <= cells["memorisation_high"]).all()
    instant = summary[summary["summary"] == "instantaneous"]
    assert np.allclose(instant["memorisation"], 0.5, atol=0.05)


def simulated(trend: float, blocks: int, rng, lam: float = 6.5):
    rates = lam * (1 + trend * np.linspace(-1, 1, blocks))
    counts = rng.poisson(rates)
    events = np.repeat(np.arange(blocks), counts) * 512 + rng.integers(0, 512, counts.sum())
    return counts, events, blocks * 512


def test_order_tests_keep_their_nominal_rate():
    """200 homogeneous series: rejections at 0.05 ~ Binomial(200, 0.05) (mean 10, sd 3.1): within [2, 20]."""
    rng = np.random.default_rng(7)
    p = {"dispersion": [], "trend": [], "ks": []}
    for _ in range(200):
        counts, events, n = simulated(0.0, 200, rng)
        p["dispersion"].append(dispersion_test(counts)[1])
        p["trend"].append(trend_test(counts)[1])
        p["ks"].append(ks_test(events, n)[1])
    for name, values in p.items():
        rejections = int((np.array(values) < 0.05).sum())
        assert 2 <= rejections <= 20, f"{name}: {rejections} / 200 rejections"


@pytest.mark.parametrize("trend", [0.2, -0.2])
def test_order_tests_reject_a_linear_trend(trend):
    rng = np.random.default_rng(11)
    counts, events, n = simulated(trend, 2000, rng)
    change, p_trend = trend_test(counts)
    assert p_trend < 1e-6 and np.sign(change) == np.sign(trend)
    assert abs(change - ((1 + trend) / (1 - trend) - 1)) < 0.1  # the fitted first -> last change
    assert ks_test(events, n)[1] < 1e-3
    counts, _, _ = simulated(trend, 20000, rng)
    assert dispersion_test(counts)[1] < 1e-3  # a trend shows as over-dispersion only with many blocks


def test_qq_points_are_statsmodels_plotting_positions_of_the_poisson():
    from scipy import stats

    counts = np.random.default_rng(3).poisson(4.0, 300)
    theoretical, sample = qq_points(counts)
    n = len(counts)
    positions = (np.arange(1, n + 1) - 0.0) / (n + 1)  # ProbPlot's default a=0
    assert np.allclose(theoretical, stats.poisson(counts.mean()).ppf(positions))
    assert np.array_equal(sample, np.sort(counts))


def order_panel(seed, blocks=40, rate=0.01):
    rng = np.random.default_rng(seed)
    n = blocks * 512
    return pd.DataFrame(
        {"example_id": np.arange(n), "unit_kind": "train", "treat_step": np.arange(n) // 16 + 1.0, "step": 5000}
        | {"arch": "pythia", "seed": seed, "score32": (rng.random(n) < rate).astype(float)}
    )


def test_order_tables_count_blocks_in_training_order():
    frame = check_panel(pd.concat([order_panel(0), order_panel(1)]).sample(frac=1, random_state=0))
    tests, counts = order_tables(frame, block=512)
    assert list(tests["n_blocks"]) == [40, 40]
    mine = frame[frame["seed"] == 0].sort_values("example_id")
    hand = mine["score32"].to_numpy().reshape(40, 512).sum(axis=1)
    assert np.array_equal(counts[counts["seed"] == 0]["count"].to_numpy(), hand)
    assert tests.iloc[0]["events"] == hand.sum()


def test_precision_and_recall_equal_a_hand_count():
    rng = np.random.default_rng(5)
    rows = []
    final = {}
    for arch in ("pythia", "mamba"):
        for seed in (0, 1):
            for step in (100, 200):
                memorized = rng.random(400) < (0.1 if step == 100 else 0.2)
                final[(arch, seed, step)] = memorized
                rows.append(
                    pd.DataFrame({"example_id": np.arange(400), "unit_kind": "train", "treat_step": 50.0}).assign(
                        step=step, arch=arch, seed=seed, score32=memorized.astype(float)
                    )
                )
    table = predict_table(check_panel(pd.concat(rows)))
    assert len(table) == 4 * 4  # per target: its own step 100, and the 3 other runs at their end
    row = table[(table["arch"] == "pythia") & (table["seed"] == 0) & (table["predictor_arch"] == "mamba")]
    row = row[row["predictor_seed"] == 1].iloc[0]
    predicted, actual = final[("mamba", 1, 200)], final[("pythia", 0, 200)]
    tp = (predicted & actual).sum()
    assert row["kind"] == "arch+seed" and row["n"] == 400
    assert row["precision"] == pytest.approx(tp / predicted.sum())
    assert row["recall"] == pytest.approx(tp / actual.sum())
    assert row["f1"] == pytest.approx(2 * tp / (predicted.sum() + actual.sum()))
    kinds = table[(table["arch"] == "pythia") & (table["seed"] == 0)].set_index(["predictor_arch", "predictor_seed"])
    assert kinds.loc[("pythia", 0), "kind"] == "checkpoint" and kinds.loc[("pythia", 1), "kind"] == "seed"


def test_the_command_writes_tables_and_refuses_bad_input(tmp_path, capsys):
    from parc.memorization import main

    evals = tmp_path / "evals"
    (evals / "examples").mkdir(parents=True)
    panel = pd.concat([synthetic_panel(seed=s, per_cohort=30, controls=40) for s in (0, 1)])
    panel["score32"] = (np.random.default_rng(0).random(len(panel)) < 0.05).astype(float)
    panel.drop(columns="cohort").to_parquet(evals / "examples" / "memorization.parquet")
    main(["profile", f"evals={evals}", "samples=10"])
    main(["order", f"evals={evals}", "block=16"])
    main(["predict", f"evals={evals}"])
    out = evals / "memorization"
    for stem in ("profile", "profile-summary", "profile-seeds", "profile-correlation", "order", "predict"):
        assert (out / f"{stem}.parquet").is_file(), stem
    correlation = pd.read_parquet(out / "profile-correlation.parquet")
    assert correlation.iloc[0]["pair"] == "seeds" and correlation.iloc[0]["r"] > 0.9
    assert (out / "order-qq.png").is_file() and (out / "profile.pdf").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", f"evals={tmp_path / 'nothing'}", f"out={tmp_path / 'o'}"])
    assert exit_info.value.code == 2 and not (tmp_path / "o").exists()
    assert capsys.readouterr().err.strip().startswith("error:")
