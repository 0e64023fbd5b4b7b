"""data.holdout: a seeded within-shard holdout of never-trained rows. The held-out rows, recomputed in plain numpy
from the documented rule, appear in no batch; holdout=0 gives exactly the plan Parc had before; the training rows
are the slice minus the holdout; a run with one trains, records it in its data fingerprint (a resume with another
is refused) and the panel draws its never-trained controls from it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_train import assert_refused, metrics

from conftest import run_cli, run_cli_cases, short_run, train

B, N = 16, 8  # the demo's global batch and the short runs' steps


def plan(demo_root, *extra, steps=N):
    from parc.config import compose
    from parc.data.stream import BatchPlan, open_stream

    cfg = compose(["experiment=demo", f"paths.root={demo_root}", f"trainer.max_steps={steps}", *extra])
    assert cfg.trainer.global_batch_size == B
    return BatchPlan.from_config(cfg, open_stream(cfg))


def consumed(p) -> np.ndarray:
    return np.concatenate([p.indices(step) for step in range(1, p.max_steps + 1)])


def held_out_rule(shard: int, holdout: int, seed: int, steps: int = N) -> np.ndarray:
    """The documented rule, independently: slice k = rows [k L, (k+1) L), L = B * steps + H; the held-out rows are
    default_rng([seed, k]).choice(L, H, replace=False) within it."""
    length = B * steps + holdout
    chosen = np.random.default_rng([seed, shard]).choice(length, holdout, replace=False)
    return np.sort(shard * length + chosen)


@pytest.mark.parametrize("shard, data_seed", [(0, None), (1, 5)])
def test_held_out_rows_are_never_trained_and_the_rest_of_the_slice_is(demo_root, shard, data_seed):
    seed = "null" if data_seed is None else data_seed
    p = plan(demo_root, f"data.shard={shard}", f"data.data_seed={seed}", "data.holdout=12", "data.holdout_seed=3")
    held = held_out_rule(shard, 12, 3)
    np.testing.assert_array_equal(p.held_out, held)
    rows = consumed(p)
    assert not set(rows.tolist()) & set(held.tolist())
    length = B * N + 12
    slice_rows = np.arange(shard * length, (shard + 1) * length)
    training = np.setdiff1d(slice_rows, held)
    np.testing.assert_array_equal(np.sort(rows), training)  # each training row exactly once
    if data_seed is None:  # stream order over the training rows
        np.testing.assert_array_equal(rows, training)
    else:  # the data_seed permutation, as without a holdout, applied to the training rows
        np.testing.assert_array_equal(rows, training[np.random.default_rng(data_seed).permutation(B * N)])
    for step in range(1, N + 1):
        np.testing.assert_array_equal(p.batch(step), p.stream.sequences(rows[(step - 1) * B : step * B]))
    # other seeds hold out other rows; the world size plays no part (ranks tile the same global batch)
    assert not np.array_equal(plan(demo_root, f"data.shard={shard}", "data.holdout=12").held_out, held)
    parts = [p.rank_batch(3, rank, 2) for rank in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), p.batch(3))


@pytest.mark.parametrize("data_seed", [None, 7])
def test_holdout_zero_is_the_plan_parc_had(demo_root, data_seed):
    seed = "null" if data_seed is None else data_seed
    p = plan(demo_root, "data.shard=2", f"data.data_seed={seed}")
    first = 2 * B * N  # today's rule: shard k starts at k * B * N, permuted by default_rng(data_seed)
    within = np.arange(B * N) if data_seed is None else np.random.default_rng(data_seed).permutation(B * N)
    for step in range(1, N + 1):
        np.testing.assert_array_equal(p.indices(step), first + within[(step - 1) * B : step * B])
    assert len(p.held_out) == 0 and "holdout" not in p.fingerprint() and "holdout" not in p.prefix(4)
    assert (
        p.fingerprint()
        == plan(demo_root, "data.shard=2", f"data.data_seed={seed}", "data.holdout_seed=9").fingerprint()
    )


def test_drop_substitutes_lie_outside_the_slice_and_the_holdout(demo_root):
    p = plan(demo_root, "data.holdout=12", "data.holdout_seed=3")
    late = consumed(p)[5 * B : 5 * B + 2]  # consumed at step 6, after step 4
    dropped = plan(
        demo_root, "data.holdout=12", "data.holdout_seed=3", "intervention=drop", "intervention.step=4",
        f"intervention.rows=[{late[0]},{late[1]}]",
    )  # fmt: skip
    length = B * N + 12
    assert dropped.edits.replacements == {int(late[0]): length, int(late[1]): length + 1}
    assert not set(consumed(dropped).tolist()) & set(p.held_out.tolist())
    from parc.errors import ParcError

    with pytest.raises(ParcError, match="is not consumed after step 4"):  # a held-out row cannot be dropped
        plan(
            demo_root, "data.holdout=12", "data.holdout_seed=3", "intervention=drop", "intervention.step=4",
            f"intervention.rows=[{p.held_out[0]}]",
        )  # fmt: skip


def test_a_holdout_beyond_the_data_is_refused_naming_it(demo_root):
    from parc.errors import ParcError

    total = len(plan(demo_root).stream)
    with pytest.raises(ParcError, match=r"data.shard=0 is beyond the data: .* \+ data.holdout"):
        plan(demo_root, f"data.holdout={total}")


@pytest.fixture(scope="module")
def holdout_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("holdout") / "pythia-seed0-shard0"
    train(*short_run(demo_root, out, "data.holdout=32"))
    return out


def test_a_holdout_run_trains_records_it_and_refuses_another_on_resume(demo_root, holdout_run, tmp_path):
    out = holdout_run
    p = plan(demo_root, "data.holdout=32")
    hashes = [row["batch_hash"] for row in metrics(out)]
    assert hashes == [p.batch_hash(step) for step in range(1, N + 1)]
    assert hashes != [plan(demo_root).batch_hash(step) for step in range(1, N + 1)]
    state = json.loads((out / "checkpoint-8" / "training_state" / "trainer_state.json").read_text())
    assert state["identity"]["data"]["holdout"] == {"rows": 32, "seed": 0}
    before = (out / "metrics.jsonl").read_text()
    result = run_cli("parc.train", *short_run(demo_root, out, "data.holdout=16", "resume=checkpoint-4"))
    assert_refused(result, "different data")
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_the_panel_draws_its_controls_from_the_holdout(demo_root, holdout_run, tmp_path):
    keys = ["eval.panel.per_interval=2", "eval.panel.controls=8", "eval.prompt_len=8", "eval.continuation_len=8"]
    out = tmp_path / "panel"
    result = run_cli(
        "parc.evaluate", "eval=panel", f"runs={holdout_run}", f"out={out}", "eval.batch_size=8", "steps=8", *keys
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(out / "examples" / "memorization.parquet")
    controls = table[table.unit_kind == "control"].example_id.unique()
    held = held_out_rule(0, 32, 0)
    assert len(controls) == 8 and set(controls) <= set(held.tolist())
    expected = np.sort(np.random.default_rng([0, 0]).choice(held, 8, replace=False))  # eval.panel.seed 0
    np.testing.assert_array_equal(np.sort(controls), expected)


def test_panel_controls_fall_back_to_the_tail_when_the_holdouts_differ(demo_root, capsys):
    from types import SimpleNamespace

    from parc.study.evaluations.panel import control_rows

    with_holdout = SimpleNamespace(plan=plan(demo_root, "data.holdout=32"))
    rows, source = control_rows([with_holdout, with_holdout], 8, 0)
    assert source == "holdout" and capsys.readouterr().err == ""
    np.testing.assert_array_equal(
        rows, np.sort(np.random.default_rng([0, 0]).choice(held_out_rule(0, 32, 0), 8, replace=False))
    )
    for other in (plan(demo_root), plan(demo_root, "data.holdout=32", "data.holdout_seed=1")):
        rows, source = control_rows([with_holdout, SimpleNamespace(plan=other)], 8, 0)
        err = capsys.readouterr().err.strip().splitlines()
        assert source == "tail" and len(err) == 1 and "data.holdout" in err[0]
        assert rows.min() >= B * N + 32  # after both runs' slices (the longer one: 128 + 32 rows)
    rows, source = control_rows([SimpleNamespace(plan=plan(demo_root))], 8, 0)  # no holdout: today's rule, silently
    assert source == "tail" and capsys.readouterr().err == "" and rows.min() >= B * N
    tail = np.arange(B * N, len(with_holdout.plan.stream))
    np.testing.assert_array_equal(rows, np.sort(np.random.default_rng([0, 0]).choice(tail, 8, replace=False)))


def test_the_dry_run_prints_the_holdout(demo_root, tmp_path):
    base = ["experiment=demo", f"paths.root={demo_root}", f"output_dir={tmp_path / 'run'}", "dry_run=true"]
    total = len(plan(demo_root).stream)
    held, beyond, none = run_cli_cases(
        "parc.train", [[*base, "data.holdout=32"], [*base, f"data.holdout={total}"], base]
    )
    assert held.returncode == beyond.returncode == none.returncode == 0, held.stderr + beyond.stderr
    lines = {line.split()[0]: line for line in held.stdout.splitlines() if line.strip()}
    assert "32 rows of the shard's slice never trained" in lines["holdout"]
    assert f"shard(s) of {B * 200 + 32}" in lines["data"]  # the demo's 200 steps x 16 + the holdout
    assert "data.shard=0 with data.holdout=" in beyond.stdout and "beyond the data" in beyond.stdout
    assert "  holdout " not in none.stdout and not (tmp_path / "run").exists()
