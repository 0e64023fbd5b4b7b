"""`python -m parc.evaluate` end to end on a real demo grid: numbers equal direct computations from the models'
log-probabilities, reruns add nothing, a kill -9 mid-evaluation then a rerun gives the uninterrupted table,
two processes share one table, Hub revisions (Parc's and a foreign repo's) through the real client, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from parc.study.evaluations.lmeval import write_local_task

from conftest import run_cli
from hub_server import Repo, hub_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(1800)  # the first test trains the session's demo grid (conftest eval_grid)

PAIRS = [
    ("The king is dead.", "The king are dead."),
    ("My lord, I am here.", "My lord, I are here."),
    ("She loves him well.", "She love him well."),
    ("We go to the tower.", "We goes to the tower."),
]
TEXTS = [
    "To be, or not to be, that is the question.",
    "Now is the winter of our discontent.",
    "All the world's a stage, and all the men and women merely players.",
]
CLOZE = [
    ("What light through yonder window", " breaks"),
    ("Friends, Romans, countrymen, lend me your", " ears"),
    ("A horse! a horse! my kingdom for a", " horse"),
    ("O Romeo, Romeo! wherefore art thou", " Romeo"),
]


def write_tasks(directory: Path) -> Path:
    """Three local lm-eval tasks: minimal pairs (multiple choice), rolling perplexity, cloze."""
    specs = {
        "tiny_pairs": (
            "multiple_choice",
            [{"good": g, "bad": b} for g, b in PAIRS],
            'doc_to_text: ""\ndoc_to_choice: "{{[good, bad]}}"\ndoc_to_target: 0\ntarget_delimiter: ""\n'
            "metric_list:\n  - metric: acc",
        ),
        "tiny_ppl": (
            "loglikelihood_rolling",
            [{"text": t} for t in TEXTS],
            'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n  - metric: bits_per_byte',
        ),
        "tiny_cloze": (
            "loglikelihood",
            [{"context": c, "target": t} for c, t in CLOZE],
            'doc_to_text: "{{context}}"\ndoc_to_target: "{{target}}"\ntarget_delimiter: ""\n'
            "metric_list:\n  - metric: acc",
        ),
    }
    for name, (output_type, docs, body) in specs.items():
        write_local_task(directory, name, output_type, docs, body)
    return directory


def evaluate(*args, env=None, expect=0):
    result = run_cli("parc.evaluate", "progress=false", *args, env=env, timeout=900)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# --- direct computations (plain transformers forwards, no Parc or lm-eval code) ------------------------


def token_logprobs(model, ids):
    """log p(ids[i] | ids[:i]) for i >= 1."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0], logits


def continuation_logprob(model, tokenizer, context: str, continuation: str):
    """Sum of log-probs of the continuation's tokens after the context (the EOS token when empty), and
    whether greedy decoding would have produced exactly them."""
    context_ids = tokenizer(context)["input_ids"] if context else [tokenizer.eos_token_id]
    whole = (
        tokenizer(context + continuation)["input_ids"]
        if context
        else context_ids + tokenizer(continuation)["input_ids"]
    )
    logprobs, logits = token_logprobs(model, whole)
    n = len(whole) - len(context_ids)
    greedy = torch.equal(logits[-n - 1 : -1].argmax(-1), torch.tensor(whole[-n:]))
    return float(logprobs[-n:].sum()), greedy


def direct_metrics(checkpoint_dir: Path, stream_dir: Path, first: int, count: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    manifest = json.loads((stream_dir / "manifest.json").read_text())
    (entry,) = manifest["files"]
    rows = np.memmap(stream_dir / entry["path"], dtype=manifest["dtype"], mode="r").reshape(-1, manifest["seq_len"])
    losses = []
    for row in rows[first : first + count]:
        ids = torch.tensor(row.astype(np.int64))[None]
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, labels=ids).loss))  # HF's mean over the 127 predictions
    pairs = [
        continuation_logprob(model, tokenizer, "", g)[0] > continuation_logprob(model, tokenizer, "", b)[0]
        for g, b in PAIRS
    ]
    rolling = sum(continuation_logprob(model, tokenizer, "", t)[0] for t in TEXTS)
    cloze = [continuation_logprob(model, tokenizer, c, t)[1] for c, t in CLOZE]
    return {
        ("heldout", "loss"): float(np.mean(losses)),
        ("tiny_pairs", "acc"): float(np.mean(pairs)),
        ("tiny_ppl", "bits_per_byte"): -rolling / math.log(2) / sum(len(t.encode()) for t in TEXTS),
        ("tiny_cloze", "acc"): float(np.mean(cloze)),
    }


def table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "results.parquet")


# --- tests --------------------------------------------------------------------------------------------


def test_table_equals_direct_computation_and_names_every_checkpoint(eval_grid, tmp_path):
    from importlib.metadata import version

    import lm_eval  # noqa: F401

    tasks = write_tasks(tmp_path / "tasks")
    out = tmp_path / "evals"
    result = evaluate(
        f"runs={eval_grid}",
        "steps=0,8",
        "eval.tasks=[tiny_pairs,tiny_ppl,tiny_cloze]",
        f"eval.include_path={tasks}",
        "eval.heldout.sequences=12",
        "eval.batch_size=4",
        f"out={out}",
    )
    assert "pythia-seed1-shard0 step 8: held-out loss" in result.stdout  # the one-line summary per checkpoint
    frame = table(out)
    assert list(frame.columns[:19]) == [
        "arch",
        "size",
        "seed",
        "shard",
        "data_seed",
        "step",
        "tokens",
        "evaluation",
        "task",
        "metric",
        "value",
        "stderr",
        "n",
        "source",
        "revision",
        "commit",
        "parc_version",
        "lm_eval_version",
        "task_version",
    ]
    stream_dir = eval_grid.parents[1] / "data" / "demo-parc-128"
    first = 16 * 8  # every run trained on shard 0 = the first global_batch_size x max_steps sequences
    for run in ("pythia-seed0-shard0", "pythia-seed1-shard0", "mamba-seed0-shard0"):
        for step in (0, 8):
            rows = frame[(frame.source == str(eval_grid / run)) & (frame.step == step)]
            expected = direct_metrics(eval_grid / run / f"checkpoint-{step}", stream_dir, first, 12)
            got = {
                ("heldout" if e == "heldout" else t, m): v
                for e, t, m, v in zip(rows.evaluation, rows.task, rows.metric, rows.value)
            }
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (run, step, key)
            assert got[("heldout", "perplexity")] == pytest.approx(math.exp(expected[("heldout", "loss")]), rel=1e-4)
            manifest = json.loads((eval_grid / run / f"checkpoint-{step}" / "parc_checkpoint.json").read_text())
            assert set(rows.tokens) == {manifest["tokens"]} and set(rows.revision) == {f"checkpoint-{step}"}
            assert set(rows.arch) == {run.split("-")[0]} and set(rows.seed) == {int(run.split("seed")[1][0])}
    lm_rows = frame[frame.evaluation == "lm_eval"]
    assert set(lm_rows.lm_eval_version) == {version("lm_eval")} and set(lm_rows.task_version) == {"1.0"}
    assert set(lm_rows[lm_rows.task == "tiny_pairs"].n) == {len(PAIRS)}
    examples = pd.read_parquet(out / "examples" / "lm_eval.parquet")
    pairs = examples[examples.task == "tiny_pairs"]
    assert len(pairs) == 6 * len(PAIRS) and sorted(set(pairs.example_id)) == list(range(len(PAIRS)))
    mean_acc = pairs.groupby(["source", "step"]).acc.mean().sort_index()
    table_acc = lm_rows[lm_rows.task == "tiny_pairs"].set_index(["source", "step"]).value.sort_index()
    assert np.allclose(mean_acc.to_numpy(), table_acc.to_numpy())
    heldout = pd.read_parquet(out / "examples" / "heldout.parquet")
    assert sorted(set(heldout.example_id)) == list(range(first, first + 12))


@pytest.mark.slow
def test_rerun_adds_nothing_and_a_kill_then_rerun_gives_the_uninterrupted_table(eval_grid, tmp_path):
    args = [f"runs={eval_grid}", "steps=4,8", "eval.heldout.sequences=48", "eval.batch_size=4"]
    whole = tmp_path / "whole"
    evaluate(*args, f"out={whole}")
    before = (whole / "results.csv").read_bytes()
    again = evaluate(*args, f"out={whole}")
    assert "6 done before, 0 to run" in again.stdout and (whole / "results.csv").read_bytes() == before

    killed = tmp_path / "killed"
    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "parc.evaluate", "progress=false", *args, f"out={killed}"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = killed / "parts" / "results"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and len(list(parts.glob("*.parquet"))) < 2:
        time.sleep(0.02)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(parts.glob("*.parquet")))
    assert 0 < written < 6 and not (killed / "results.parquet").exists(), written  # killed mid-way
    resumed = evaluate(*args, f"out={killed}")
    assert f"{written} done before, {6 - written} to run" in resumed.stdout
    assert (killed / "results.csv").read_bytes() == before
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "examples" / "heldout.parquet"),
        pd.read_parquet(whole / "examples" / "heldout.parquet"),
    )

    shared = tmp_path / "shared"  # two processes (as two array tasks) writing one table
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parc.evaluate",
                "progress=false",
                *args,
                f"out={shared}",
                f"part={k}",
                "num_parts=2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (0, 1)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-2000:]
    assert (shared / "results.csv").read_bytes() == before


def put_revision(hub, repo_id: str, branch: str, directory: Path, skip=()) -> None:
    files = {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(str(p.relative_to(directory)).startswith(s) for s in skip)
    }
    hub.state.repos.setdefault(repo_id, Repo(private=False))
    hub.state.commit(repo_id, branch, files)


def test_hub_revisions_parc_and_foreign_match_local_and_are_dropped(hub_server, eval_grid, tmp_path):
    run = eval_grid / "pythia-seed1-shard0"
    for step in (0, 4, 8):  # as parc.train's publisher leaves a repo: manifests and training state included
        put_revision(hub_server, "org/demo-pythia-seed1-shard0", f"checkpoint-{step}", run / f"checkpoint-{step}")
    put_revision(hub_server, "org/demo-pythia-seed1-shard0", "main", run / "checkpoint-8")
    for step in (0, 8):  # a foreign repo: Pythia-style names, no Parc manifest, no training state
        put_revision(
            hub_server,
            "lab/tinylm-seed7",
            f"step{step}",
            run / f"checkpoint-{step}",
            skip=("parc_checkpoint.json", "training_state"),
        )
    stream_dir = eval_grid.parents[1] / "data" / "demo-parc-128"
    downloads = tmp_path / "downloads"
    args = ["eval.heldout.sequences=12", f"eval.heldout.data_dir={stream_dir}", "eval.batch_size=4"]
    out = tmp_path / "hub"
    evaluate(
        "runs=hub:org/demo-pythia-seed1-shard0,hub:lab/tinylm-seed7@step8",
        f"out={out}",
        *args,
        "eval.keep_downloads=false",
        f"eval.cache_dir={downloads}",
        env=hub_server.env(),
    )
    local = tmp_path / "local"
    evaluate(f"runs={run}", f"out={local}", *args)
    hub_rows, local_rows = table(out), table(local)
    parc_rows = hub_rows[hub_rows.source == "hub:org/demo-pythia-seed1-shard0"]
    assert sorted(set(parc_rows.revision)) == [
        "checkpoint-0",
        "checkpoint-4",
        "checkpoint-8",
    ]  # sorted by step, not main
    assert set(parc_rows.arch) == {"pythia"} and set(parc_rows.seed) == {1} and set(parc_rows["size"]) == {"tiny"}
    branches = hub_server.state.repos["org/demo-pythia-seed1-shard0"].branches
    assert set(parc_rows.commit) == {branches[f"checkpoint-{s}"] for s in (0, 4, 8)}
    key = ["step", "metric"]
    assert np.array_equal(parc_rows.sort_values(key).value.to_numpy(), local_rows.sort_values(key).value.to_numpy())
    foreign = hub_rows[hub_rows.source == "hub:lab/tinylm-seed7"]
    assert set(zip(foreign.arch, foreign.seed, foreign.step, foreign.revision)) == {("gpt_neox", 7, 8, "step8")}
    assert np.array_equal(
        foreign.sort_values("metric").value.to_numpy(),
        local_rows[local_rows.step == 8].sort_values("metric").value.to_numpy(),
    )
    assert downloads.is_dir() and not any(downloads.iterdir())  # eval.keep_downloads=false: nothing left

    missing = run_cli(
        "parc.evaluate",
        "runs=hub:org/demo-pythia-seed1-shard0@checkpoint-5",
        f"out={tmp_path / 'x'}",
        env=hub_server.env(),
    )
    assert missing.returncode == 2 and "no revision 'checkpoint-5'" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_bad_input_is_one_line_exit_2_and_writes_nothing(eval_grid, tmp_path, monkeypatch, capsys):
    from parc.evaluate import main

    tasks = write_tasks(tmp_path / "tasks")
    (tmp_path / "empty-run" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "out"
    cases = [
        ([f"runs={eval_grid}", "eval.tasks=[no_such_task]", f"eval.include_path={tasks}"], "unknown lm-eval task"),
        ([f"runs={tmp_path / 'empty-run'}"], "no complete checkpoint"),
        ([f"runs={eval_grid}", "eval.heldout.start=100"], "overlaps the training data"),
        ([f"runs={eval_grid}", f"out={tmp_path / 'a-file' / 'evals'}"], "cannot write results"),
        ([f"runs={eval_grid}", "steps=3"], "no checkpoint at step 3"),
        ([f"runs={eval_grid}", "eval.no_such_key=1"], "unknown config key"),
        ([f"runs={eval_grid}", "eval=nope"], "unknown eval 'nope'"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *([] if any(a.startswith("out=") for a in args) else [f"out={out}"])])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not out.exists() and not (tmp_path / "a-file" / "evals").exists()
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if the `eval` extra were not installed
    with pytest.raises(SystemExit):
        main([f"runs={eval_grid}", "eval=parc", f"out={out}"])
    assert "pip install 'parc[eval]'" in capsys.readouterr().err and not out.exists()
