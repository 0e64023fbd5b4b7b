"""Canaries in the data plan (data.canaries): every planted batch rebuilt in plain numpy from the base plan and the
manifest has the recorded hash, every other step hash-equals the base run, the DDP split sees the same global batch,
a canary run resumes bit-identically, parc.batch marks canary rows, and impossible specs are refused."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from test_train import assert_refused, assert_same_weights, losses, metrics

from conftest import run_cli, run_cli_cases, short_run, train

SPEC = [
    "data.canaries.seed=7",
    "data.canaries.per_group=2",
    "data.canaries.repeats=[1,3]",
    "data.canaries.windows=[[2,4],[6,8]]",
    "data.canaries.references=5",
]


def plans(demo_root, *extra):
    """(base plan, plan with `extra`) of the 8-step demo run."""
    from parc.config import compose
    from parc.data.stream import BatchPlan, open_stream

    base = ["experiment=demo", f"paths.root={demo_root}", "trainer.max_steps=8"]
    stream = open_stream(compose(base))
    return BatchPlan.from_config(compose(base), stream), BatchPlan.from_config(compose(base + list(extra)), stream)


def sha16(rows: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(rows, dtype="<i4").tobytes()).hexdigest()[:16]


def test_planted_batches_rebuilt_in_numpy_have_the_recorded_hashes(demo_root):
    base, planted = plans(demo_root, *SPEC)
    record = planted.edits.canary_record(planted)
    tokens = {c["canary"]: np.array(c["tokens"]) for c in record["canaries"]}
    by_step = {}
    for entry in record["manifest"]:
        by_step.setdefault(entry["step"], []).append(entry)
        assert entry["token_hash"] == sha16(tokens[entry["canary"]][None])
        assert entry["displaced"] == base.indices(entry["step"])[entry["row"]]  # the natural row it replaced
    for step in range(1, 9):
        rebuilt = base.batch(step).copy()
        for entry in by_step.get(step, []):
            rebuilt[entry["row"]] = tokens[entry["canary"]]
        assert sha16(rebuilt) == planted.batch_hash(step)
        assert (planted.batch_hash(step) == base.batch_hash(step)) == (step not in by_step)
        assert planted.canary_rows(step) == {e["row"]: e["canary"] for e in by_step.get(step, [])}
    # 2 windows x 2 repetition counts x 2 canaries; each planted its count of times, inside its window, one row each
    inserted = [c for c in record["canaries"] if c["kind"] == "inserted"]
    assert len(inserted) == 8 and sum(c["kind"] == "reference" for c in record["canaries"]) == 5
    copies = Counter(e["canary"] for e in record["manifest"])
    for c in inserted:
        start, end = [[2, 4], [6, 8]][c["window"]]
        assert copies[c["canary"]] == c["repeats"]
        assert all(start <= e["step"] < end for e in record["manifest"] if e["canary"] == c["canary"])
    assert len({(e["step"], e["row"]) for e in record["manifest"]}) == len(record["manifest"]) == 2 * 2 * (1 + 3)
    # references are never planted; tokens avoid EOS and stay in the vocabulary; the prompt is random per canary
    eos = planted.stream.manifest["tokenizer"]["eos_token_id"]
    assert not set(copies) & {c["canary"] for c in record["canaries"] if c["kind"] == "reference"}
    allrows = np.stack(list(tokens.values()))
    assert allrows.min() >= 0 and allrows.max() < 2048 and not (allrows == eos).any()
    assert len({tuple(r[:32]) for r in allrows}) == len(allrows)
    # the manifest is part of the data fingerprint; the prefix up to step 1 holds no canary
    assert planted.fingerprint()["canaries"]["spec"]["seed"] == 7 and "canaries" not in planted.prefix(1)
    assert (
        planted.prefix(4) != base.prefix(4)
        and plans(demo_root, *SPEC[:-1], "data.canaries.references=9")[1].fingerprint()["canaries"]["manifest_sha256"]
        == planted.fingerprint()["canaries"]["manifest_sha256"]
    )


def test_a_given_prompt_and_the_ddp_split(demo_root):
    _, planted = plans(demo_root, *SPEC, "data.canaries.prompt=[5,6,7]")
    record = planted.edits.canary_record(planted)
    assert all(c["tokens"][:3] == [5, 6, 7] for c in record["canaries"])
    for step in range(1, 9):  # every world size dividing the batch reads the same global batch, canaries included
        for world in (2, 4):
            parts = [planted.rank_batch(step, rank, world) for rank in range(world)]
            assert np.array_equal(np.concatenate(parts), planted.batch(step))


def test_a_canary_run_records_resumes_bit_identically_and_parc_batch_marks_rows(demo_root, tmp_path):
    out = tmp_path / "canary"
    train(*short_run(demo_root, out, *SPEC, "checkpoint.keep_train_states=null", every=2))
    base, planted = plans(demo_root, *SPEC)
    rows = metrics(out)
    assert [r["batch_hash"] for r in rows] == [planted.batch_hash(s) for s in range(1, 9)]
    record = json.loads((out / "canaries.json").read_text())
    assert record["manifest"] == planted.edits.manifest(planted)
    state = json.loads((out / "checkpoint-8" / "training_state" / "trainer_state.json").read_text())
    assert (
        state["identity"]["data"]["canaries"]["manifest_sha256"] == planted.fingerprint()["canaries"]["manifest_sha256"]
    )
    reference, final = losses(out), out / "checkpoint-8"
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "model.safetensors").write_bytes((final / "model.safetensors").read_bytes())
    # resuming mid-run (checkpoint-2: its optimizer, schedule and RNG) redoes steps 3..8 identically
    train(*short_run(demo_root, out, *SPEC, "checkpoint.keep_train_states=null", "resume=checkpoint-2", every=2))
    assert losses(out) == reference
    assert_same_weights(out / "checkpoint-8", tmp_path / "final")
    # the same run with other canaries is another data plan: resuming it is refused, nothing written
    before = (out / "metrics.jsonl").read_text()
    result = run_cli(
        "parc.train",
        *short_run(demo_root, out, *SPEC, "checkpoint.keep_train_states=null", "data.canaries.seed=8", every=2),
    )
    assert_refused(result, "different data")
    assert (out / "metrics.jsonl").read_text() == before
    step = record["manifest"][0]["step"]
    shown = run_cli("parc.batch", f"run={out}", f"step={step}")
    assert shown.returncode == 0, shown.stderr
    marks = ", ".join(f"row {e['row']} = canary {e['canary']}" for e in record["manifest"] if e["step"] == step)
    assert f"# canary rows: {marks}" in shown.stdout and planted.batch_hash(step) in shown.stdout


@pytest.mark.parametrize(
    "spec, phrase",
    [
        (["data.canaries.windows=[[6,12]]"], "window [6, 12) lies beyond the run (steps 1..8"),
        (
            ["data.canaries.windows=[[3,4]]", "data.canaries.repeats=[8]", "data.canaries.per_group=3"],
            "more canary rows in step 3 (24) than its batch of 16",
        ),
        # 2 windows x 32 copies: each fits its own 32 rows, not their 48-row union
        (
            ["data.canaries.windows=[[1,3],[2,4]]", "data.canaries.repeats=[16]", "data.canaries.per_group=2"],
            "more canaries (64 rows) than rows in their windows (48",
        ),
        (["data.canaries.prompt_tokens=128"], "leaves no secret"),
    ],
)
def test_impossible_canary_specs_are_refused_with_nothing_written(demo_root, tmp_path, spec, phrase):
    out = tmp_path / "refused"
    [result] = run_cli_cases("parc.train", [short_run(demo_root, out, "data.canaries.seed=1", *spec)])
    assert_refused(result, phrase)
    assert not out.exists()
