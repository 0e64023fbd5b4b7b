"""`python -m parc.evaluate eval=canaries` (eval=memorization's panel mode with exposure) on a tiny canary run: the
same units at every checkpoint, before and after training on them; treat steps from the run's plan; nll and accuracy
equal a plain loop over the transformers model; score32 equals `model.generate`, also where greedy decoding was
skipped; exposure equals its definition (10.0 below 1,023 references) and scipy's skew-normal extrapolation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import run_cli, short_run, train

SPEC = [
    "data.canaries.seed=3",
    "data.canaries.per_group=2",
    "data.canaries.repeats=[1,4]",
    "data.canaries.windows=[[3,5]]",
    "data.canaries.references=30",
]
PANEL = ["eval.panel.per_interval=4", "eval.panel.controls=8", "eval.prompt_len=16", "eval.continuation_len=16"]


@pytest.fixture(scope="module")
def canary_panel(demo_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("panelrun") / "pythia-seed0-shard0"
    train(*short_run(demo_root, run, *SPEC, every=2))
    out = tmp_path_factory.mktemp("panel")
    result = run_cli("parc.evaluate", "eval=canaries", f"runs={run}", f"out={out}", "eval.batch_size=8", *PANEL)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, out, pd.read_parquet(out / "examples" / "memorization.parquet")


def plan_of(run, demo_root):
    from parc.data.stream import BatchPlan, open_stream

    cfg = OmegaConf.load(run / "config.yaml")
    cfg.data.dir = str(demo_root / "data" / cfg.data.dir)
    return BatchPlan.from_config(cfg, open_stream(cfg))


@pytest.mark.slow
def test_the_same_units_at_every_checkpoint_with_their_treat_steps(canary_panel, demo_root):
    run, _, table = canary_panel
    assert sorted(table.step.unique()) == [0, 2, 4, 6, 8]
    units = {step: tuple(sorted(rows.example_id)) for step, rows in table.groupby("step")}
    assert len(set(units.values())) == 1
    at0 = table[table.step == 0].set_index("example_id")
    counts = at0.unit_kind.value_counts().to_dict()
    assert {k: counts[k] for k in ("reference", "control", "canary")} == {"reference": 30, "control": 8, "canary": 4}
    plan = plan_of(run, demo_root)
    # every train unit is the stream row its treat step's batch holds at a non-canary row, 4 per interval (c, c+2]
    train_units = at0[at0.unit_kind == "train"]
    for row, unit in train_units.iterrows():
        where = list(plan.indices(int(unit.treat_step))).index(row)
        assert where not in plan.canary_rows(int(unit.treat_step)) and unit.last_step == unit.treat_step
    # (rows the canaries of steps 3..4 displaced are left out: never trained in this run)
    per_interval = ((train_units.treat_step - 1) // 2).value_counts().to_dict()
    assert {k: per_interval[k] for k in (0, 2, 3)} == {0: 4, 2: 4, 3: 4} and 1 <= per_interval[1] <= 4
    # controls: rows no step consumes; nulls where never trained
    consumed = {int(i) for s in range(1, 9) for i in plan.indices(s)}
    controls = at0[at0.unit_kind == "control"]
    assert not set(controls.index) & consumed and controls.treat_step.isna().all()
    # canaries: first and last insertion steps, repeats, from the manifest
    manifest = plan.edits.manifest(plan)
    for canary_id, unit in at0[at0.unit_kind == "canary"].iterrows():
        steps = [e["step"] for e in manifest if e["canary"] == -1 - canary_id]
        assert (unit.treat_step, unit.last_step, unit.repeats) == (min(steps), max(steps), len(steps))
    # pre-treatment checkpoints are scored: at step 2, the units trained at steps 3..8 (and at step 0, all)
    assert (table[(table.step == 2) & (table.unit_kind == "train")].treat_step > 2).sum() == len(train_units) - 4


def unit_tokens(run, demo_root, rows):
    import json

    plan = plan_of(run, demo_root)
    canaries = {c["canary"]: c["tokens"] for c in json.loads((run / "canaries.json").read_text())["canaries"]}
    natural = rows[rows.example_id >= 0]
    tokens = [plan.stream.sequences(natural.example_id.to_numpy())[i] for i in range(len(natural))]
    tokens += [np.array(canaries[-1 - i]) for i in rows[rows.example_id < 0].example_id]
    return pd.concat([natural, rows[rows.example_id < 0]]), tokens


@pytest.mark.slow
def test_outcomes_equal_a_plain_loop_and_generate(canary_panel, demo_root):
    import torch
    from transformers import AutoModelForCausalLM

    from parc.study.evaluations.greedy import generate_continuations

    run, _, table = canary_panel
    rows, tokens = unit_tokens(run, demo_root, table[table.step == 8])
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoint-8").eval()
    nll, accuracy, secret = plain_outcomes(model, tokens, secret_from=32)  # the canaries' 32-token prompt
    with torch.inference_mode():
        generated = generate_continuations(model, np.stack([t[:16] for t in tokens]), 16, batch_size=8)
    np.testing.assert_allclose(rows.nll, nll, rtol=1e-4)
    np.testing.assert_allclose(rows.accuracy, accuracy)
    truth = np.stack([t[16:32] for t in tokens])
    np.testing.assert_allclose(rows.score32, (generated == truth).mean(axis=1))
    planted = rows.example_id < 0
    np.testing.assert_allclose(rows.secret_nll[planted], np.array(secret)[planted.to_numpy()], rtol=1e-4)
    assert rows.secret_nll[~planted].isna().all() and rows.exposure[~planted].isna().all()


def plain_outcomes(model, rows, secret_from, width=32):
    """nll, accuracy (positions 0..width-2) and secret nll (tokens secret_from..) by a per-row loop."""
    import torch

    nll, accuracy, secret = [], [], []
    with torch.inference_mode():
        for row in rows:
            logp = torch.log_softmax(model(torch.as_tensor(row[None], dtype=torch.long)).logits[0].double(), dim=-1)
            token_nll = [-logp[j, row[j + 1]].item() for j in range(len(row) - 1)]
            nll.append(np.mean(token_nll[: width - 1]))
            accuracy.append(np.mean([logp[j].argmax().item() == row[j + 1] for j in range(width - 1)]))
            secret.append(np.mean(token_nll[secret_from - 1 :]))
    return np.array(nll), np.array(accuracy), np.array(secret)


def test_one_forward_outcomes_and_score32_where_decoding_was_skipped():
    """On a random tiny GPT-NeoX: nll, accuracy and the secret's nll equal a plain loop; rows whose continuation is
    the model's own greedy one match under teacher forcing (no decoding, score 1.0); with a corrupted continuation
    they are decoded; score32 equals `model.generate` in both cases."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from parc.study.evaluations.greedy import generate_continuations
    from parc.study.evaluations.panel import score_tokens

    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    model = GPTNeoXForCausalLM(config).eval()
    prompts = np.random.default_rng(0).integers(0, 64, (6, 16))
    with torch.inference_mode():
        greedy = generate_continuations(model, prompts, 24, batch_size=6)
    own = np.concatenate([prompts, greedy], axis=1)  # 40 tokens: a 16 + 16 unit and 8 more of "secret"
    scored = score_tokens(model, own, 16, 16, batch_size=4, secret_from=16)
    assert scored["decoded"] == 0 and (scored["score32"] == 1.0).all()
    nll, accuracy, secret = plain_outcomes(model, own, secret_from=16)
    np.testing.assert_allclose(scored["nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(scored["accuracy"], accuracy)
    np.testing.assert_allclose(scored["secret_nll"], secret, rtol=1e-5)
    corrupted = own.copy()
    corrupted[:, 20] = (corrupted[:, 20] + 1) % 64
    scored = score_tokens(model, corrupted, 16, 16, batch_size=4)
    assert scored["decoded"] == 6
    np.testing.assert_allclose(scored["score32"], (greedy[:, :16] == corrupted[:, 16:32]).mean(axis=1))


def test_train_units_are_the_rows_the_run_consumes(demo_root):
    """run_position: the step/row where the run's own plan (canaries planted, a block swap) reads each stream row."""
    from test_canaries import plans

    from parc.data.stream import BatchPlan
    from parc.study.evaluations.panel import interval_positions, run_position

    for extra in (SPEC, ["intervention=block_swap", "intervention.step=1", "intervention.blocks=[2,4,5,7]"]):
        _, plan = plans(demo_root, *extra)
        base = BatchPlan(plan.stream, plan.shard, plan.data_seed, plan.global_batch_size, plan.max_steps)
        positions = interval_positions([0, 2, 4, 6, 8], 16, 5, seed=0)
        assert [((positions // 16) // 2 == i).sum() for i in range(4)] == [5, 5, 5, 5]
        rows = np.concatenate([base.indices(int(p // 16 + 1))[[p % 16]] for p in positions])
        found = run_position(plan, rows)
        for row, pos in zip(rows, found):
            step = int(pos // 16 + 1)
            if pos < 0:  # only a row a canary displaced is never trained
                assert any(plan.indices(s)[r] == row for s in range(1, 9) for r in plan.canary_rows(s))
            else:
                assert plan.indices(step)[pos % 16] == row and pos % 16 not in plan.canary_rows(step)


def test_exposure_by_rank_and_by_skew_normal_fit():
    from scipy.stats import skewnorm

    from parc.study.evaluations.panel import exposure

    refs = np.random.default_rng(1).gamma(4.0, 1.0, 1023) + 2.0
    secrets = np.array([refs.min() - 0.5, np.sort(refs)[9] + 1e-9, refs.max() + 1.0])
    values = np.concatenate([secrets, refs])
    is_reference = np.r_[np.zeros(3, bool), np.ones(1023, bool)]
    ranked, fitted = exposure(values, is_reference)
    # below all 1,023 references: rank 1 of 1,024 candidates; the 10 references at or below: rank 11; above all: 0
    assert ranked[0] == 10.0
    assert ranked[1] == pytest.approx(10 - math.log2(11)) and ranked[2] == 0.0
    params = skewnorm.fit(refs)
    np.testing.assert_allclose(fitted, -np.log2(skewnorm.cdf(values, *params)), rtol=1e-9)
    # a reference among the other 1,022 (and itself): the lowest one scores log2(1023)
    assert ranked[3 + refs.argmin()] == pytest.approx(math.log2(1023))


@pytest.mark.slow
def test_the_table_exposure_recomputed_from_its_secret_nll(canary_panel):
    _, out, table = canary_panel
    results = pd.read_parquet(out / "results.parquet")
    for step, rows in table.groupby("step"):
        refs = rows[rows.unit_kind == "reference"].secret_nll.to_numpy()
        for _, unit in rows[rows.unit_kind == "canary"].iterrows():
            rank = 1 + (refs <= unit.secret_nll).sum()
            assert unit.exposure == pytest.approx(math.log2(len(refs) + 1) - math.log2(rank))
        mean = results[(results.step == step) & (results.metric == "nll_train")].value.item()
        assert mean == pytest.approx(rows[rows.unit_kind == "train"].nll.mean())


@pytest.mark.slow
def test_a_panel_beyond_the_stream_is_refused_with_nothing_written(canary_panel, tmp_path):
    run, _, _ = canary_panel
    out = tmp_path / "refused"
    result = run_cli("parc.evaluate", "eval=canaries", f"runs={run}", f"out={out}", "eval.panel.controls=100000000")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: eval.panel.controls=100000000")
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
