"""`python -m parc.prepare` on the real demo config, and `python -m parc.batch`, as a user runs them."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parc.config import compose
from parc.data import BatchPlan, open_stream, prepare_data

from conftest import REPO, run_cli

DEMO_RUN = 16 * 200  # the demo experiment: global batch 16 x 200 steps = sequences in shard 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The bundled demo prepared end to end by the CLI: all 42 plays, seq_len 128, a 2048-token BPE."""
    root = tmp_path_factory.mktemp("demo")
    overrides = ["experiment=demo", f"paths.root={root}"]
    env = {"HF_DATASETS_CACHE": str(root / "datasets-cache"), "HF_HOME": str(root / "hf-home")}
    result = run_cli("parc.prepare", *overrides, env=env)
    assert result.returncode == 0, result.stderr
    return overrides, env, compose(overrides), result


def test_prepare_demo_end_to_end(demo):
    overrides, env, cfg, result = demo
    manifest = json.loads((Path(cfg.data.dir) / "manifest.json").read_text())
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(
        rf"prepared .*: 42 documents, {manifest['num_sequences']} sequences x 128 tokens, .* tokens/s$", summary
    )
    assert "tok/s" in result.stderr  # the progress bar
    with gzip.open(REPO / "src/parc/demo_corpus/shakespeare.jsonl.gz", "rt") as handle:
        assert manifest["source"]["documents"] == sum(1 for _ in handle) == 42
    assert manifest["seq_len"] == 128 and manifest["dtype"] == "uint16" and manifest["packing"] == "parc"
    assert manifest["tokenizer"]["name"] == "train-bpe" and manifest["tokenizer"]["len"] == 2048
    assert manifest["num_sequences"] >= DEMO_RUN  # shard 0 of the demo run fits
    assert 0 < manifest["tokens"]["kept"] <= manifest["tokens"]["in"]
    rerun = run_cli("parc.prepare", *overrides, env=env)
    assert rerun.returncode == 0 and "already prepared" in rerun.stdout and "nothing to do" in rerun.stdout


def test_batch_cli_prints_saves_and_decodes_the_step(demo, tmp_path):
    overrides, env, cfg, _ = demo
    plan = BatchPlan.from_config(cfg, open_stream(cfg))
    printed = run_cli("parc.batch", *overrides, "step=200", env=env)
    assert printed.returncode == 0, printed.stderr
    header, *rows = printed.stdout.strip().splitlines()
    assert f"batch hash {plan.batch_hash(200)}" in header
    np.testing.assert_array_equal(np.array([row.split() for row in rows], dtype=np.int64), plan.batch(200))

    out = tmp_path / "step1.npy"
    saved = run_cli("parc.batch", *overrides, "step=1", f"out={out}", "decode=true", env=env)
    assert saved.returncode == 0 and f"saved to {out}" in saved.stdout
    np.testing.assert_array_equal(np.load(out), plan.batch(1))
    decoded = run_cli("parc.batch", *overrides, "step=1", "decode=true", env=env)
    assert decoded.stdout.splitlines()[1:3] == ["# sequence 0", "ALL'S WELL THAT ENDS WELL"]  # the first play


@pytest.mark.parametrize(
    "args, message",
    [
        (["step=0"], "1-based"),
        (["step=201"], "choose 1..200"),
        (["step=1", "paths.root=/nonexistent"], "no prepared data"),
    ],
)
def test_batch_cli_refuses_bad_input(demo, tmp_path, args, message):
    overrides, env, _, _ = demo
    out = tmp_path / "x.npy"
    result = run_cli("parc.batch", *overrides, *args, f"out={out}", env=env)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr


def test_concurrent_parts_like_a_slurm_array_assemble_the_single_run_stream(tmp_path):
    tiny = [
        "data=demo",
        "data.max_documents=2",
        "data.seq_len=32",
        "data.tokenizer_vocab_size=300",
        "data.vocab_size=300",
    ]
    single = prepare_data(compose([*tiny, f"data.dir={tmp_path / 'single'}"]), progress=False).manifest
    # Both parts start together: both train the tokenizer, one publishes it, the last to finish assembles.
    parts = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parc.prepare",
                *tiny,
                f"data.dir={tmp_path / 'array'}",
                f"prepare.part={i}",
                "prepare.num_parts=2",
            ],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [part.communicate(timeout=300) for part in parts]
    assert [part.returncode for part in parts] == [0, 0], outputs
    manifest = json.loads((tmp_path / "array/manifest.json").read_text())
    assert manifest["num_parts"] == 2 and manifest["content_sha256"] == single["content_sha256"]
    assert manifest["num_sequences"] == single["num_sequences"]
    assert not list((tmp_path / "array").rglob(".tmp-*"))
