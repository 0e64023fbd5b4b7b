"""Interventions from step k (intervention=) and exact branches (branch_from=), against independent computations:
block swap and reshuffle keep the multiset and leave steps <= k as they were, drop replaces exactly the listed rows,
the token map equals a numpy remap of the base batch, a branch with no change equals its parent's own continuation
bit for bit (losses and final weights), and impossible branches are refused with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from test_canaries import plans, sha16
from test_train import assert_refused, assert_same_weights, losses, metrics

from conftest import run_cli_cases, short_run


def hashes(plan):
    return [plan.batch_hash(step) for step in range(1, plan.max_steps + 1)]


def test_block_swap_and_reshuffle_keep_the_multiset_and_the_steps_before_k(demo_root):
    base, swapped = plans(demo_root, "intervention=block_swap", "intervention.step=4", "intervention.blocks=[5,6,7,9]")
    order = [1, 2, 3, 4, 7, 8, 6, 5]  # [5,6) <-> [7,9): the blocks trade places, step 6 between them shifts
    for step, source in enumerate(order, start=1):
        assert np.array_equal(swapped.indices(step), base.indices(source))
        assert swapped.batch_hash(step) == base.batch_hash(source)
    for step_k, seed in ((4, 1), (0, 2)):
        _, shuffled = plans(
            demo_root, "intervention=reshuffle", f"intervention.step={step_k}", f"intervention.seed={seed}"
        )
        before = [s for s in range(1, step_k + 1)]
        assert all(np.array_equal(shuffled.indices(s), base.indices(s)) for s in before)
        after = range(step_k + 1, 9)
        mine = np.concatenate([shuffled.indices(s) for s in after])
        theirs = np.concatenate([base.indices(s) for s in after])
        assert sorted(mine) == sorted(theirs) and not np.array_equal(mine, theirs)
    assert swapped.prefix(4) == base.prefix(4) and swapped.fingerprint() != base.fingerprint()


def test_drop_and_token_map_equal_their_numpy_versions(demo_root):
    base, _ = plans(demo_root)
    dropped_rows = [int(base.indices(6)[3]), int(base.indices(7)[0])]
    _, dropped = plans(
        demo_root,
        "intervention=drop",
        "intervention.step=4",
        f"intervention.rows=[{dropped_rows[0]},{dropped_rows[1]}]",
    )
    end_of_slice = base.first + base.sequences_per_shard
    for step in range(1, 9):
        expected = base.indices(step).copy()
        for i, row in enumerate(dropped_rows):
            expected[expected == row] = end_of_slice + i
        assert np.array_equal(dropped.indices(step), expected)
    assert [h1 == h2 for h1, h2 in zip(hashes(base), hashes(dropped))] == [True] * 5 + [False, False, True]
    # the two most frequent tokens of step 5 trade places from step 5 on (inputs and labels are the same rows)
    counts = np.bincount(base.batch(5).ravel())
    a, b = (int(t) for t in np.argsort(counts)[-2:])
    _, mapped = plans(
        demo_root, "intervention=token_map", "intervention.step=4", f"intervention.token_map=[[{a},{b}],[{b},{a}]]"
    )
    for step in range(1, 9):
        batch = base.batch(step)
        expected = np.where(batch == a, b, np.where(batch == b, a, batch)) if step > 4 else batch
        assert np.array_equal(mapped.batch(step), expected)


def branch_cases(demo_root, parent, tmp_path):
    """(shared settings, the canary overrides, the two tokens swapped) for the branches of `parent`'s checkpoint-4."""
    counts = np.bincount(plans(demo_root)[0].batch(5).ravel())
    a, b = (int(t) for t in np.argsort(counts)[-2:])
    canaries = [
        "data.canaries.seed=1",
        "data.canaries.per_group=1",
        "data.canaries.repeats=[2]",
        "data.canaries.windows=[[5,7]]",
    ]
    return f"branch_from={parent}/checkpoint-4", canaries, (a, b)


@pytest.mark.timeout(900)
def test_a_branch_with_no_change_is_the_parents_continuation_and_bad_branches_are_refused(
    demo_root, eval_grid, tmp_path
):
    parent = eval_grid / "pythia-seed0-shard0"  # 8 steps, checkpoints 0, 4, 8 (with training state)
    parent_before = (parent / "metrics.jsonl").read_text()
    copy = tmp_path / "copy"
    shutil.copytree(parent, copy)
    source, canaries, _ = branch_cases(demo_root, parent, tmp_path)
    cases = [
        short_run(demo_root, tmp_path / "same", source),
        # refusals: not a checkpoint with training state; the parent's own dir; other data before k; another step
        short_run(demo_root, tmp_path / "r1", f"branch_from={parent}/checkpoint-5"),
        short_run(demo_root, copy, f"branch_from={copy}/checkpoint-4"),
        short_run(demo_root, tmp_path / "r3", source, *canaries[:3], "data.canaries.windows=[[2,3]]"),
        short_run(demo_root, tmp_path / "r4", source, "intervention=reshuffle", "intervention.step=2"),
        short_run(demo_root, tmp_path / "r5", source, "init_from=" + str(parent / "checkpoint-4")),
    ]
    results = run_cli_cases("parc.train", cases, timeout=900)
    assert results[0].returncode == 0, results[0].stderr[-3000:]
    assert_refused(
        results[1],
        "checkpoint-5 is not a complete checkpoint with training state",
        "checkpoint-0, checkpoint-4, checkpoint-8",
    )
    assert_refused(results[2], "a branch needs a new directory")
    assert_refused(results[3], "data up to step 4 differs from the parent's (canaries")
    assert_refused(results[4], "intervention.step=2 but branch_from is a checkpoint of step 4")
    assert_refused(results[5], "pass one of them")
    assert not any((tmp_path / name).exists() for name in ("r1", "r3", "r4", "r5"))
    assert (parent / "metrics.jsonl").read_text() == parent_before  # the control is untouched

    # no change: the parent's own continuation, bit for bit; the lineage in every row, manifest and config
    same = tmp_path / "same"
    assert losses(same) == losses(parent)[4:]
    assert [r["batch_hash"] for r in metrics(same)] == [r["batch_hash"] for r in metrics(parent)][4:]
    assert_same_weights(same / "checkpoint-8", parent / "checkpoint-8")
    assert {(r["branch_from"], r["branch_step"]) for r in metrics(same)} == {("pythia-seed0-shard0/checkpoint-4", 4)}
    manifest = json.loads((same / "checkpoint-8" / "parc_checkpoint.json").read_text())
    assert (
        manifest["branch"]["source"] == "pythia-seed0-shard0/checkpoint-4"
        and manifest["branch"]["intervention"] is None
    )
    assert yaml.safe_load((same / "config.yaml").read_text())["branch_from"] == "pythia-seed0-shard0/checkpoint-4"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_intervened_branches_train_on_their_plan(demo_root, eval_grid, tmp_path):
    parent = eval_grid / "pythia-seed0-shard0"
    copy = tmp_path / "copy"  # a copy of the parent, for the bare checkpoint-4 form (its branch lands beside it)
    shutil.copytree(parent, copy)
    source, canaries, (a, b) = branch_cases(demo_root, parent, tmp_path)
    results = run_cli_cases(
        "parc.train",
        [
            short_run(demo_root, copy, "branch_from=checkpoint-4", "intervention=reshuffle", "intervention.seed=1"),
            short_run(demo_root, tmp_path / "canaries", source, "intervention=canaries", *canaries),
            short_run(
                demo_root,
                tmp_path / "tokens",
                source,
                "intervention=token_map",
                f"intervention.token_map=[[{a},{b}],[{b},{a}]]",
            ),
        ],
        timeout=900,
    )
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]

    # reshuffle (bare checkpoint-4: the branch goes to <parent>-reshuffle-from4): the plan's batches from step 5
    reshuffled = tmp_path / "copy-reshuffle-from4"
    _, plan = plans(demo_root, "intervention=reshuffle", "intervention.step=4", "intervention.seed=1")
    rows = metrics(reshuffled)
    assert [r["batch_hash"] for r in rows] == hashes(plan)[4:] and {r["intervention"] for r in rows} == {"reshuffle"}
    assert losses(reshuffled) != losses(parent)[4:]
    config = yaml.safe_load((reshuffled / "config.yaml").read_text())
    assert config["intervention"] == {**config["intervention"], "name": "reshuffle", "step": 4, "seed": 1}
    state = json.loads((reshuffled / "checkpoint-8" / "training_state" / "trainer_state.json").read_text())
    assert state["branch"]["intervention"] == {"name": "reshuffle", "step": 4, "seed": 1}

    # canaries from k change exactly steps 5 and 6; the token map equals the numpy remap of the parent's batches
    parent_hashes = [r["batch_hash"] for r in metrics(parent)]
    assert [h != p for h, p in zip([r["batch_hash"] for r in metrics(tmp_path / "canaries")], parent_hashes[4:])] == [
        True,
        True,
        False,
        False,
    ]
    assert (tmp_path / "canaries" / "canaries.json").is_file()
    base, _ = plans(demo_root)
    remapped = [
        sha16(np.where(base.batch(s) == a, b, np.where(base.batch(s) == b, a, base.batch(s)))) for s in range(5, 9)
    ]
    assert [r["batch_hash"] for r in metrics(tmp_path / "tokens")] == remapped
