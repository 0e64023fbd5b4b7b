"""`python -m parc.export rwkv`: a demo RWKV run's checkpoint as BlinkDL's .pth, checked with the real `rwkv`
package (its own loader and forward pass) against transformers' logits; `hub.extra_formats=[rwkv]`
publishes the same file in each revision's single commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import run_cli, short_run

TOKENS = [5, 17, 300, 2, 9, 1000, 44, 44, 7, 1500, 3, 12]

LOGITS = """
import json, sys
import torch
args = json.loads(sys.argv[1])
from rwkv.model import RWKV
from transformers import RwkvForCausalLM
blinkdl = RWKV(model=args["pth"], strategy="cpu fp32", verbose=False)
theirs, _ = blinkdl.forward(args["tokens"], None, full_output=True)
reference = RwkvForCausalLM.from_pretrained(args["checkpoint"]).eval()
with torch.no_grad():
    ours = reference(torch.tensor([args["tokens"]])).logits[0]
print(json.dumps({"max_diff": (theirs.float() - ours).abs().max().item(), "shape": list(theirs.shape),
                  "scale": ours.abs().max().item()}))
"""


def rwkv_logits_diff(pth, checkpoint) -> dict:
    env = {**os.environ, "RWKV_JIT_ON": "1", "RWKV_CUDA_ON": "0"}
    payload = json.dumps({"pth": str(pth), "checkpoint": str(checkpoint), "tokens": TOKENS})
    done = subprocess.run([sys.executable, "-c", LOGITS, payload], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def published(demo_root, tmp_path_factory):
    """A 2-step demo RWKV run publishing to a local Hub with hub.extra_formats=[rwkv]: (server, output_dir)."""
    from hub_server import HubServer

    server = HubServer().start()
    out = tmp_path_factory.mktemp("rwkv-export") / "run"
    args = [
        *short_run(demo_root, out, "arch=rwkv", steps=2, every=2),
        "hub.repo_id=org/rwkv-demo",
        "hub.extra_formats=[rwkv]",
        "hub.max_commits_per_hour=360000",
        "hub.retry_initial_s=0.05",
    ]
    done = run_cli("parc.train", *args, env=server.env())
    assert done.returncode == 0, done.stderr[-3000:]
    yield server, out
    server.stop()


@pytest.fixture(scope="module")
def rwkv_run(published):
    return published[1]


@pytest.mark.timeout(900)  # the module's training run is set up here
def test_exported_rwkv_gives_transformers_logits_in_the_rwkv_package(rwkv_run, tmp_path):
    import torch

    checkpoint = rwkv_run / "checkpoint-2"
    pth = tmp_path / "demo-rwkv.pth"
    done = run_cli("parc.export", "rwkv", str(checkpoint), str(pth))
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(pth, weights_only=True)
    assert {
        "emb.weight",
        "blocks.0.ln0.weight",
        "blocks.0.ln1.weight",
        "blocks.0.att.time_mix_k",
        "blocks.0.att.time_decay",
        "blocks.0.att.time_first",
        "blocks.0.att.key.weight",
        "blocks.0.ffn.time_mix_r",
        "blocks.0.ffn.receptance.weight",
        "ln_out.weight",
        "head.weight",
    } <= set(state)
    assert not any(k.startswith("rwkv.") or "attention" in k or "feed_forward" in k for k in state)
    result = rwkv_logits_diff(pth, checkpoint)
    assert result["shape"] == [len(TOKENS), 2048]
    assert result["max_diff"] <= 1e-4, result  # logits are O(1): result["scale"]
    assert result["scale"] > 1e-2  # a real comparison, not of zeros

    half = tmp_path / "demo-rwkv-bf16.pth"
    assert run_cli("parc.export", "rwkv", str(checkpoint), str(half), "dtype=bf16").returncode == 0
    assert {t.dtype for t in torch.load(half, weights_only=True).values()} == {torch.bfloat16}


def test_bad_inputs_get_one_line_errors_and_write_nothing(rwkv_run, demo_root, tmp_path):
    not_rwkv = tmp_path / "pythia-checkpoint"
    not_rwkv.mkdir()
    (not_rwkv / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    cases = [
        ([str(not_rwkv), str(tmp_path / "a.pth")], "not an RWKV checkpoint (model_type='gpt_neox')"),
        ([str(tmp_path / "nowhere"), str(tmp_path / "b.pth")], "is not a directory"),
        ([str(tmp_path), str(tmp_path / "c.pth")], "no config.json"),
        ([str(rwkv_run / "checkpoint-2"), str(tmp_path / "missing-dir" / "d.pth")], "is not a directory; create it"),
        ([str(rwkv_run / "checkpoint-2"), "/proc/parc-e.pth"], "cannot write /proc/parc-e.pth"),
        ([str(rwkv_run / "checkpoint-2"), str(tmp_path)], "is a directory"),
        (["hub:org/name", str(tmp_path / "f.pth")], "name the revision"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        done = run_cli("parc.export", "rwkv", *args, env={"HF_HUB_OFFLINE": "0"})
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr, (message, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_extra_format_is_published_in_the_same_commit(published, tmp_path):
    hub_server, out = published
    local = tmp_path / "local.pth"
    assert run_cli("parc.export", "rwkv", str(out / "checkpoint-2"), str(local)).returncode == 0
    for branch, step in [("checkpoint-0", 0), ("checkpoint-2", 2), ("main", 2)]:
        files = hub_server.state.files("org/rwkv-demo", branch)
        manifest = json.loads(files["parc_checkpoint.json"])
        assert manifest["step"] == step and "rwkv.pth" in manifest["files"] and "rwkv.pth" in files
        assert manifest["files"]["rwkv.pth"]["size"] == len(files["rwkv.pth"])
        assert len(hub_server.state.branch_commits("org/rwkv-demo", branch)) == 1, branch
    assert hub_server.state.files("org/rwkv-demo", "checkpoint-2")["rwkv.pth"] == local.read_bytes()

    fetched = tmp_path / "fetched.pth"  # and from the Hub, as a user of the published suite would
    done = run_cli("parc.export", "rwkv", "hub:org/rwkv-demo@checkpoint-2", str(fetched), env=hub_server.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert fetched.read_bytes() == local.read_bytes()
