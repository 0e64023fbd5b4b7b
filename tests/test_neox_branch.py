"""`branch_from=neox:<dir>`: an exact branch of a raw GPT-NeoX checkpoint (written here by test_neox_raw's DeeperSpeed
0.3.15 writer, in the demo's tiny Pythia shapes), against `resume=neox:<dir>` of the same files: with no change the
branch trains exactly what the resume trains (losses, batches, final weights and Adam moments, bit for bit on CPU)
and records itself as a branch; with `intervention=reshuffle` its batches after k are the plan's, and bad forms are
refused in one line with nothing written."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from test_neox_raw import neox_params, write_0315
from test_train import assert_refused, assert_same_weights, losses, metrics

from conftest import run_cli_cases

pytestmark = pytest.mark.timeout(900)
K = 4  # the raw checkpoint's iteration: the branch's step
# the raw checkpoint's recipe, as this run must give it (check_recipe): schedule and samples per step
SCHEDULE = {"start_lr": 1e-3, "min_lr": 1e-4, "warmup_iter": 2.0, "end_iter": 8, "num_iters": K - 1}
RECIPE = [
    "experiment=demo",
    "trainer.max_steps=8",
    "checkpoint.every=4",
    "trainer.progress=false",
    "trainer.lr_schedule=neox",
    "trainer.lr=1e-3",
    "trainer.min_lr=1e-4",
    "trainer.warmup_steps=null",
    "trainer.warmup_fraction=0.25",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=4",
]


def plan_hashes(demo_root, *extra) -> list:
    """The batch hash of every step of this recipe's data plan (with `extra`), from parc's own BatchPlan."""
    from parc.config import compose
    from parc.data.stream import BatchPlan, open_stream

    cfg = compose([*RECIPE, f"paths.root={demo_root}", *extra])
    plan = BatchPlan.from_config(cfg, open_stream(cfg))
    return [plan.batch_hash(step) for step in range(1, cfg.trainer.max_steps + 1)]


def optimizer_moments(checkpoint_dir) -> list:
    state = torch.load(checkpoint_dir / "training_state" / "optimizer.pt")["state"]
    return [(i, k, state[i][k]) for i in sorted(state) for k in ("exp_avg", "exp_avg_sq")]


def test_a_branch_of_a_raw_checkpoint_trains_what_its_resume_trains_and_bad_forms_are_refused(
    demo_root, tmp_path, monkeypatch
):
    save = tmp_path / "neox-save"
    write_0315(
        save / f"global_step{K}",
        neox_params(128, 2, 2048),
        dp=2,
        bucket=2800,
        monkeypatch=monkeypatch,
        iteration=K,
        schedule=SCHEDULE,
        batch=4,
    )
    (save / "latest").write_text(f"global_step{K}")
    base = [*RECIPE, f"paths.root={demo_root}", f"paths.output_root={tmp_path / 'runs'}"]
    (tmp_path / "not-raw").mkdir()
    refused = {
        "r1": [f"output_dir={tmp_path / 'r1'}", "branch_from=neox:"],
        "r2": [f"output_dir={tmp_path / 'r2'}", f"branch_from=neox:{tmp_path / 'not-raw'}"],
        "r3": [f"output_dir={tmp_path / 'r3'}", f"branch_from=neox:{save}", f"init_from=neox:{save}"],
        "r4": [f"branch_from=neox:{save}", "intervention=reshuffle"],  # no output_dir=: the config's default
        "r5": [f"output_dir={save / 'branch'}", f"branch_from=neox:{save}"],  # inside the raw checkpoint's save dir
        "r6": [f"output_dir={tmp_path / 'r6'}", f"branch_from=neox:{save}", "intervention.step=2"],
    }
    cases = [
        [*base, f"output_dir={tmp_path / 'resumed'}", f"resume=neox:{save}"],
        [*base, f"output_dir={tmp_path / 'same'}", f"branch_from=neox:{save}"],
        [
            *base,
            f"output_dir={tmp_path / 'shuffled'}",
            f"branch_from=neox:{save / f'global_step{K}'}",
            "intervention=reshuffle",
            "intervention.seed=1",
        ],
        *([*base, *extra] for extra in refused.values()),
    ]
    results = run_cli_cases("parc.train", cases, timeout=900)
    for result in results[:3]:
        assert result.returncode == 0, result.stderr[-3000:]
    resumed, same, shuffled = (tmp_path / name for name in ("resumed", "same", "shuffled"))

    # refusals: one line each, exit 2, nothing written (not even the default directory or inside the save dir)
    phrases = [
        "write neox:<global_stepN directory>",
        "is not a raw GPT-NeoX checkpoint",
        "pass one of them",
        "needs an output_dir of its own",
        "pass output_dir=<new dir> outside it",
        "intervention.step=2 but branch_from is a checkpoint of step 4",
    ]
    for result, phrase in zip(results[3:], phrases):
        assert_refused(result, phrase)
    assert not any((tmp_path / name).exists() for name in refused) and not (tmp_path / "runs").exists()
    assert sorted(p.name for p in save.iterdir()) == [f"global_step{K}", "latest"]

    # no change: the resume's training, bit for bit (batches, losses, weights, Adam moments)
    assert [r["step"] for r in metrics(same)] == [5, 6, 7, 8]
    assert losses(same) == losses(resumed)
    hashes = plan_hashes(demo_root)
    assert [r["batch_hash"] for r in metrics(same)] == [r["batch_hash"] for r in metrics(resumed)] == hashes[K:]
    assert_same_weights(same / "checkpoint-8", resumed / "checkpoint-8")
    for (i, key, a), (_, _, b) in zip(
        optimizer_moments(same / "checkpoint-8"), optimizer_moments(resumed / "checkpoint-8")
    ):
        assert torch.equal(a, b), (i, key)

    # ... recorded as a branch (the resume records the raw checkpoint as where it started), with one note line
    source = f"neox:neox-save/global_step{K}"
    assert {(r["branch_from"], r["branch_step"], r.get("intervention")) for r in metrics(same)} == {(source, K, None)}
    assert {r["init_from"] for r in metrics(resumed)} == {source} and "branch_from" not in metrics(resumed)[0]
    manifest = json.loads((same / "checkpoint-8" / "parc_checkpoint.json").read_text())
    assert manifest.get("init_from") is None
    assert manifest["branch"] == {
        **manifest["branch"],
        "source": source,
        "step": K,
        "format": "deeperspeed-0.3.15",
        "num_iters": K - 1,
        "intervention": None,
    }
    config = yaml.safe_load((same / "config.yaml").read_text())
    assert config["branch_from"] == source and config["intervention"]["step"] == K
    notes = [line for line in results[1].stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "no Parc data fingerprint" in notes[0] and "data=pile_pythia" in notes[0]
    assert not any(line.startswith("note: ") for line in results[0].stderr.splitlines())

    # reshuffle from k: the plan's batches after k (a new order of the same remaining rows), recorded in every row
    reshuffled = plan_hashes(demo_root, "intervention=reshuffle", f"intervention.step={K}", "intervention.seed=1")
    assert reshuffled[:K] == hashes[:K] and reshuffled[K:] != hashes[K:]
    rows = metrics(shuffled)
    assert [r["batch_hash"] for r in rows] == reshuffled[K:]
    assert [h != p for h, p in zip(reshuffled[K:], hashes[K:])] == [
        r["batch_hash"] != p for r, p in zip(rows, hashes[K:])
    ]
    assert {(r["branch_from"], r["branch_step"], r["intervention"]) for r in rows} == {(source, K, "reshuffle")}
    assert losses(shuffled) != losses(resumed)
    state = json.loads((shuffled / "checkpoint-8" / "training_state" / "trainer_state.json").read_text())
    assert state["branch"]["intervention"] == {"name": "reshuffle", "step": K, "seed": 1}
    assert state["branch"]["source"] == source and state["step"] == 8
