"""`parc.memorization canaries` and `parc.memorization branch` (the memorization demonstration's analyses) against
independent computations: group means and checks against a plain loop over a synthetic canary panel with known
values; the branch's difference in differences against hand means on a synthetic parent/branch pair; and both
commands end to end on a real tiny canary run, its exact block-swap branch and `parc.evaluate eval=canaries`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, short_run, train

STEPS = [0, 10, 20, 30]
ENDS = {0: 10, 1: 20}  # each window's last insertion step
REPEATS = [1, 4, 16]


def exposure_of(window, repeats, step, seed):
    """A known exposure_fit: 1.5 before the window, 10 * repeats right after it, then halving each checkpoint."""
    end = ENDS[window]
    if step < end:
        return 1.5
    return 10.0 * repeats * 0.5 ** STEPS.index(step) / 0.5 ** STEPS.index(end) + 0.1 * seed


def canary_panel(seeds=(0, 1, 2), per_group=3, references=20):
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for step in STEPS:
            unit = 0
            for window in ENDS:
                for repeats in REPEATS:
                    for _ in range(per_group):
                        exposure = exposure_of(window, repeats, step, seed)
                        extracted = float(repeats >= 16 and step == ENDS[window])
                        rows.append(
                            {"example_id": -1 - unit, "unit_kind": "canary", "window": window, "repeats": repeats}
                            | {"treat_step": ENDS[window] - 5, "last_step": ENDS[window] - int(rng.integers(0, 2))}
                            | {"exposure_fit": exposure + rng.normal(0, 0.01), "exposure": min(exposure, 4.3)}
                            | {"score32": extracted, "secret_nll": 9.0 - exposure / 10, "step": step, "seed": seed}
                        )
                        unit += 1
            for r in range(references):
                rows.append(
                    {"example_id": -1 - unit - r, "unit_kind": "reference", "window": None, "repeats": None}
                    | {"treat_step": None, "last_step": None, "exposure_fit": rng.exponential(1.44)}
                    | {"exposure": rng.uniform(0, 4.3), "score32": 0.0, "secret_nll": 9.0, "step": step, "seed": seed}
                )
    frame = pd.DataFrame(rows).assign(arch="pythia", nll=5.0, accuracy=0.0)
    for column in ("window", "repeats", "treat_step", "last_step"):
        frame[column] = frame[column].astype("Int64")
    return frame


def test_canary_groups_equal_a_plain_loop_and_the_checks_follow_the_values():
    from parc.study.memorization.canaries import checks, group_table, seed_table
    from parc.study.memorization.panel import check_panel

    panel = check_panel(canary_panel())
    groups = group_table(panel)
    seeds = seed_table(groups, samples=200)
    for (seed, step, window, repeats), expected in {
        (1, 20, 1, 16): None,
        (0, 30, 0, 4): None,
        (2, 0, 1, 1): None,
    }.items():
        units = panel[
            (panel["seed"] == seed) & (panel["step"] == step) & (panel["window"] == window)
            & (panel["repeats"] == repeats)
        ]  # fmt: skip
        row = groups[
            (groups["seed"] == seed) & (groups["step"] == step) & (groups["window"] == window)
            & (groups["repeats"] == repeats)
        ].iloc[0]  # fmt: skip
        assert row["exposure_fit"] == pytest.approx(units["exposure_fit"].sum() / len(units))
        assert row["extracted"] == sum(units["score32"] == 1.0) / len(units) and row["n"] == 3
        assert row["after"] == {0: 10, 1: 20}[window]  # the first checkpoint at or after the last insertion
    refs = groups[groups["group"] == "references"]
    assert len(refs) == 3 * len(STEPS) and refs["window"].isna().all() and (refs["n"] == 20).all()
    # seed means: the mean of the three seeds' group means
    at = seeds[(seeds["measure"] == "exposure_fit") & (seeds["window"] == 0) & (seeds["repeats"] == 16)]
    hand = groups[(groups["window"] == 0) & (groups["repeats"] == 16)].groupby("step")["exposure_fit"].mean()
    assert at.set_index("step")["mean"].to_dict() == pytest.approx(hand.to_dict())

    verdicts = checks(groups, seeds, strong=16).set_index(["check", "window", "repeats"], drop=False)
    monotone = verdicts[verdicts["check"] == "monotone_exposure_fit"]
    assert monotone["holds"].tolist() == [True, True] and monotone["step"].tolist() == [10, 20]
    extracted = verdicts[verdicts["check"] == "extracted"]
    assert extracted[["window", "repeats", "value", "holds"]].values.tolist() == [
        [0, 16, 1.0, True],
        [1, 16, 1.0, True],
    ]
    decay = verdicts[verdicts["check"] == "decay"]
    assert decay["holds"].tolist() == [True] * 6  # 10 r -> 10 r / 4 (window 0) or / 2 (window 1), all above refs
    late = verdicts[verdicts["check"] == "late_minus_early"].set_index("repeats")["value"]
    hand_late = {r: 10.0 * r / 2 - 10.0 * r / 4 for r in REPEATS}  # both at step 30, seeds' 0.1 s cancels
    assert late.to_dict() == pytest.approx(hand_late, abs=0.02)

    # break the values: a 16x group below the 4x right after window 0, and references above everything at the end
    broken = panel.copy()
    hit = (broken["window"] == 0) & (broken["repeats"] == 16) & (broken["step"] == 10)
    broken.loc[hit, "exposure_fit"] = 1.0
    broken.loc[broken["unit_kind"] == "reference", "exposure_fit"] = 1e3
    groups = group_table(broken)
    verdicts = checks(groups, seed_table(groups, samples=50), strong=16)
    assert verdicts[verdicts["check"] == "monotone_exposure_fit"]["holds"].tolist() == [False, True]
    assert not verdicts[verdicts["check"] == "decay"]["holds"].any()


def branch_pair(effect=-0.4, control_shift=0.1):
    """A parent and its block-swap branch from k = 10: units 0-9 move 11-15 -> 26-30 (later), 10-19 the other way,
    20-29 trained before k, 30-39 never trained; the branch lowers the nll of later-moved units by `effect` more
    than the controls'."""
    rows = []
    for unit in range(40):
        kind = "control" if unit >= 30 else "train"
        parent_step = {0: 11 + unit % 5, 1: 26 + unit % 5, 2: 1 + unit % 9}.get(unit // 10)
        branch_step = {0: 26 + unit % 5, 1: 11 + unit % 5, 2: parent_step}.get(unit // 10)
        for step in (0, 10, 20, 30):
            base = 5.0 + 0.01 * unit - 0.02 * step
            shift = 0.0 if step < 10 else control_shift + {0: effect, 1: -effect}.get(unit // 10, 0.0)
            for label, treat, nll in (("", parent_step, base), ("block_swap@10", branch_step, base + shift)):
                if label and step < 10:
                    continue
                rows.append(
                    {"example_id": unit, "unit_kind": kind, "treat_step": treat, "step": step, "nll": nll}
                    | {"arch": "pythia", "seed": 0, "intervention": label, "score32": 0.0, "accuracy": 0.0}
                )
    frame = pd.DataFrame(rows)
    frame["treat_step"] = frame["treat_step"].astype("Int64")
    return frame


def test_the_branch_did_equals_hand_means_and_a_missing_parent_is_refused():
    from parc.errors import ParcError
    from parc.study.memorization.branch import branch_table
    from parc.study.memorization.panel import check_panel

    panel = check_panel(branch_pair())
    assert sorted(panel["arch"].unique()) == ["pythia", "pythia block_swap@10"]  # the branch is its own line
    table = branch_table(panel, samples=100)
    at = table[table["step"] == 30].set_index("group")
    assert at.loc["moved later", "n"] == 10 and at.loc["moved earlier", "n"] == 10 and at.loc["control", "n"] == 10
    assert at.loc["before branch", "n"] == 10 and "unmoved" not in at.index
    assert at.loc["moved later", "delta"] == pytest.approx(0.1 - 0.4)
    assert at.loc["moved later", "did"] == pytest.approx(-0.4) and at.loc["moved earlier", "did"] == pytest.approx(0.4)
    assert at.loc["before branch", "did"] == pytest.approx(0.0, abs=1e-9)  # shifted by +0.1 like the controls
    assert at.loc["moved later", "did_low"] - 1e-9 <= -0.4 <= at.loc["moved later", "did_high"] + 1e-9
    assert sorted(table["step"].unique()) == [10, 20, 30]  # only checkpoints at or after k
    with pytest.raises(ParcError, match="its parent"):
        branch_table(check_panel(branch_pair().query("intervention != ''")))
    with pytest.raises(ParcError, match="no branch"):
        branch_table(check_panel(branch_pair().query("intervention == ''")))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_canaries_and_a_block_swap_branch_end_to_end(demo_root, tmp_path):
    """A tiny canary run, its exact block-swap branch from step 4, eval=canaries on both, then the two analyses:
    the moved units are exactly the panel rows of the swapped blocks (from the parent's own treat steps)."""
    parent = tmp_path / "pythia-seed0-shard0"
    canaries = ["data.canaries.seed=1", "data.canaries.per_group=2", "data.canaries.repeats=[1,4]"]
    canaries += ["data.canaries.windows=[[2,4]]", "data.canaries.references=40"]
    train(*short_run(demo_root, parent, *canaries, steps=12))
    train(*short_run(demo_root, parent, *canaries, "branch_from=checkpoint-4", "intervention=block_swap",
                     "intervention.blocks=[5,7,11,13]", steps=12))  # fmt: skip
    branch = tmp_path / "pythia-seed0-shard0-block_swap-from4"
    evals = tmp_path / "evals"
    panel_keys = ["eval.panel.per_interval=6", "eval.panel.controls=12", "eval.prompt_len=16"]
    result = run_cli("parc.evaluate", "eval=canaries", f"runs={parent},{branch}", f"out={evals}", *panel_keys,
                     "eval.continuation_len=16")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_parquet(evals / "examples" / "memorization.parquet")
    assert set(rows["intervention"]) == {"", "block_swap@4"}
    for analysis in ("canaries", "branch"):
        result = run_cli("parc.memorization", analysis, f"evals={evals}")
        assert result.returncode == 0, result.stderr[-3000:]
    out = evals / "memorization"
    table = pd.read_parquet(out / "branch.parquet")
    parent_units = rows[(rows["intervention"] == "") & (rows["unit_kind"] == "train") & (rows["step"] == 12)]
    treat = parent_units["treat_step"].astype(float)
    expected = {"moved later": int(treat.between(5, 6).sum()), "moved earlier": int(treat.between(11, 12).sum())}
    last = table[table["step"] == 12].set_index("group")["n"]
    assert {g: int(last.get(g, 0)) for g in expected} == expected and min(expected.values()) > 0
    assert int(last["before branch"]) == int((treat <= 4).sum())
    verdicts = pd.read_parquet(out / "canaries-checks.parquet")
    assert set(verdicts["check"]) >= {"monotone_exposure", "monotone_exposure_fit", "decay"}
    assert set(verdicts["arch"]) == {"pythia"}  # the branch's first checkpoint (4) comes after the window: not judged
    for stem in ("canaries-exposure-fit", "canaries-extracted", "canaries-repeats", "branch"):
        assert (out / f"{stem}.png").is_file(), stem
    bad = run_cli("parc.memorization", "branch", f"evals={evals}", "outcome=loss")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "outcome" in bad.stderr
