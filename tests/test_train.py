"""End to end through `python -m parc.train` as a user runs it: the demo trains, runs are deterministic,
checkpoints load with transformers, bad input is refused (resuming: tests/test_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, run_cli_cases, short_run, train

ARCHS = ["pythia", "mamba", "rwkv"]


def losses(out):
    return [row["loss"] for row in metrics(out)]


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def weights(checkpoint_dir):
    return load_file(Path(checkpoint_dir) / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def demo_runs(demo_root, tmp_path_factory):
    """12-step demo runs of every arch (the fewest steps whose loss falls > 0.5 for all three), trained by
    parc.train's command line in one interpreter, in turn (imports dominate a tiny run): arch -> (out, result)."""
    outs = {arch: tmp_path_factory.mktemp("demo") / arch for arch in ARCHS}
    results = run_cli_cases(
        "parc.train", [short_run(demo_root, outs[arch], f"arch={arch}", steps=12, every=6) for arch in ARCHS]
    )
    return {arch: (outs[arch], result) for arch, result in zip(ARCHS, results)}


@pytest.mark.parametrize("arch", ARCHS)
def test_demo_trains_with_falling_loss_and_loadable_checkpoints(demo_runs, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = demo_runs[arch]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size" in result.stdout and "accumulation" in result.stdout
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows[-1]["tokens"] == 12 * 16 * 128
    for key in ("loss", "lr", "tokens", "time", "batch_hash", "tokens_per_s"):
        assert key in rows[0]
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == sorted(f"checkpoint-{s}" for s in (0, 6, 12))
    model = AutoModelForCausalLM.from_pretrained(out / "checkpoint-12")
    tokenizer = AutoTokenizer.from_pretrained(out / "checkpoint-12")
    assert model.config.model_type == {"pythia": "gpt_neox", "mamba": "mamba", "rwkv": "rwkv"}[arch]
    saved = weights(out / "checkpoint-12")
    for name, tensor in model.state_dict().items():
        if name in saved:
            assert torch.equal(tensor, saved[name]), name
    ids = tokenizer("To be, or not to be", return_tensors="pt").input_ids
    assert ids.shape[1] > 2 and int(ids.max()) < model.config.vocab_size


def test_same_seed_is_bit_identical_and_seed_changes_only_the_init(demo_root, eval_grid, tmp_path):
    # a and c: the session's grid (trained one after another in one interpreter); b: the same config as a,
    # alone in a fresh process under another output_dir, so nothing but the config and seed is shared
    a, c = eval_grid / "pythia-seed0-shard0", eval_grid / "pythia-seed1-shard0"
    b = tmp_path / "b"
    train(*short_run(demo_root, b, "arch=pythia", "seed=0"))
    assert losses(a) == losses(b)
    assert_same_weights(a / "checkpoint-8", b / "checkpoint-8")
    assert [r["batch_hash"] for r in metrics(a)] == [r["batch_hash"] for r in metrics(c)]
    assert losses(a) != losses(c)
    wa, wc = weights(a / "checkpoint-0"), weights(c / "checkpoint-0")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def assert_refused(result, *phrases):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


BAD_INPUT = [
    (["arch=transformer"], "unknown arch 'transformer'"),
    (["trainer.max_steps=ten"], "bad value for trainer.max_steps"),
    (["trainer.max_steps=-3"], "trainer.max_steps=-3 must be a positive integer"),
    (["trainer.micro_batch_size=5"], "not divisible"),
    (["trainer.lr=fast"], "bad value for trainer.lr"),
    (["checkpoint.evry=5"], "unknown config key 'checkpoint.evry'"),
    (["init_from=/nonexistent/checkpoint-3"], "init_from=/nonexistent/checkpoint-3: no such checkpoint directory"),
    (["init_from=hub:parc-pythia"], "names no organisation; write hub:<org/name>[@<revision>]"),
    (["init_from=hub:org/parc@checkpoint-4", "resume=checkpoint-4"], "init_from= starts a new run"),
    (["hub.repo_id=org/run", "resume=hub:"], "resume=hub:: name the revision"),
    (["hub.repo_id=org/run", "resume=hub:org/other@checkpoint-4"], "use init_from=hub:org/other@checkpoint-4"),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every BAD_INPUT case through parc.train's command line, in one interpreter, each with its own empty root."""
    roots = [tmp_path_factory.mktemp("bad") for _ in BAD_INPUT]
    cases = [
        ["experiment=demo", f"paths.root={root}", f"output_dir={root / 'out'}", *overrides]
        for root, (overrides, _) in zip(roots, BAD_INPUT)
    ]
    return list(zip(roots, run_cli_cases("parc.train", cases)))


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[phrase for _, phrase in BAD_INPUT])
def test_bad_input_is_a_one_line_error_and_writes_nothing(refusals, case):
    root, result = refusals[case]
    assert_refused(result, BAD_INPUT[case][1])
    assert list(root.iterdir()) == []


def test_missing_data_and_an_unwritable_output_dir_are_refused(demo_root, tmp_path):
    empty, beside_file = tmp_path / "empty", tmp_path / "beside-file"
    empty.mkdir(), beside_file.mkdir()
    (beside_file / "file.txt").write_text("x")
    missing, under_a_file, in_proc = run_cli_cases(
        "parc.train",
        [  # in one interpreter: their cost is the imports
            ["data=openwebtext", "trainer.max_steps=2", f"paths.root={empty}"],
            short_run(demo_root, beside_file / "file.txt" / "run"),
            short_run(demo_root, Path("/proc/parc-run")),
        ],
    )
    assert_refused(missing, "python -m parc.prepare")
    assert list(empty.iterdir()) == []
    assert_refused(under_a_file, "cannot write output_dir")
    assert_refused(in_proc, "cannot write output_dir")
    assert sorted(p.name for p in beside_file.iterdir()) == ["file.txt"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    result = run_cli("parc.train", "arch=rwkv", "dry_run=true", f"paths.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "169342464" in result.stdout and "accumulation" in result.stdout and "524288" in result.stdout
    assert "not prepared" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_keep_train_states_prunes_optimizer_state_but_keeps_weights(demo_root, tmp_path):
    out = tmp_path / "run"
    train(*short_run(demo_root, out, "checkpoint.keep_train_states=1", steps=6, every=2))
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps == [0, 2, 4, 6]
    with_state = [s for s in steps if (out / f"checkpoint-{s}" / "training_state").exists()]
    assert with_state == [6]
    for s in steps:
        manifest = json.loads((out / f"checkpoint-{s}" / "parc_checkpoint.json").read_text())
        assert all((out / f"checkpoint-{s}" / f).exists() for f in manifest["files"])


@pytest.mark.slow
def test_wandb_offline_logs_the_run(demo_root, tmp_path):
    out = tmp_path / "run"
    train(*short_run(demo_root, out, "logger=wandb", steps=3, every=3))
    runs = list(out.glob("wandb/offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
