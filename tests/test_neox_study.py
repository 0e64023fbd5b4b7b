"""Raw GPT-NeoX checkpoints in the study layer (`runs=neox:<dir>`, weights only): parc.evaluate's held-out loss on a
raw checkpoint equals that of its `parc.export hf` directory evaluated the same way, and `parc.dynamics diffs` over
two raw tags gives the relative change computed here from the masters the files were written with. A raw branch on
the (local) Hub is fetched and read through the path `resume=neox:hub:` takes, verified by LFS sha256. The raw files
come from the DeeperSpeed 0.3.15 writer of test_neox_raw (two data-parallel ranks, interleaved sub-partitions)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_neox_raw import hf_name, neox_params, write_0315

from conftest import run_cli
from hub_server import Repo, hub_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(1200)
HIDDEN, LAYERS, SEQ = 16, 2, 128


def tokenizer_files(demo_root: Path) -> tuple:
    from parc.data.stream import PackedStream, read_manifest

    stream_dir = demo_root / "data" / "demo-parc-128"
    stream = PackedStream(stream_dir, read_manifest(stream_dir))
    return stream_dir, sorted(p for p in stream.tokenizer_dir.iterdir() if p.is_file())


def vocab_of(files) -> int:
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(next(p for p in files if p.name == "tokenizer.json")))
    return len(tokenizer)


def raw_save_dir(root: Path, monkeypatch, vocab: int) -> dict:
    """<root>/neox-ckpt-pythia-tiny/global_step{7,9}: two checkpoints with different weights; iteration -> params."""
    save = root / "neox-ckpt-pythia-tiny"
    written = {}
    for seed, iteration in ((0, 7), (1, 9)):
        params = neox_params(HIDDEN, LAYERS, vocab, seed=seed)
        write_0315(
            save / f"global_step{iteration}",
            params,
            dp=2,
            bucket=2800,
            monkeypatch=monkeypatch,
            iteration=iteration,
            positions=SEQ,
        )
        written[iteration] = params
    return written


def test_heldout_loss_of_a_raw_checkpoint_equals_that_of_its_hf_export(demo_root, tmp_path, monkeypatch):
    stream_dir, files = tokenizer_files(demo_root)
    raw_save_dir(tmp_path, monkeypatch, vocab_of(files))
    save = tmp_path / "neox-ckpt-pythia-tiny"
    no_tokenizer = run_cli(
        "parc.evaluate", f"runs=neox:{save}", f"eval.heldout.data_dir={stream_dir}", f"out={tmp_path / 'x'}"
    )
    assert no_tokenizer.returncode == 2 and no_tokenizer.stderr.startswith("error: ")
    assert "holds no tokenizer" in no_tokenizer.stderr and not (tmp_path / "x").exists()
    for path in files:  # a raw checkpoint has no tokenizer: Pythia's goes in the save dir
        shutil.copy(path, save / path.name)
    exported = tmp_path / "pythia-tiny" / "step9"  # a bare HF dir: its step from the name
    result = run_cli("parc.export", "hf", str(save / "global_step9"), str(exported))
    assert result.returncode == 0, result.stderr[-2000:]
    for path in files:
        shutil.copy(path, exported / path.name)
    args = [f"eval.heldout.data_dir={stream_dir}", "eval.heldout.sequences=8", "eval.batch_size=4", "progress=false"]
    for runs, out in ((f"neox:{save}", tmp_path / "raw"), (str(exported), tmp_path / "hf")):
        result = run_cli("parc.evaluate", f"runs={runs}", f"out={out}", *args, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    raw, hf = (
        pd.read_parquet(tmp_path / "raw" / "results.parquet"),
        pd.read_parquet(tmp_path / "hf" / "results.parquet"),
    )
    assert sorted(set(raw.step)) == [7, 9] and set(raw.source) == {f"neox:{save.resolve()}"}
    assert set(raw.revision) == {"global_step7", "global_step9"} and set(raw.arch) == {"pythia"}
    step9 = raw[raw.step == 9].set_index("metric").value
    other = hf.set_index("metric").value
    assert set(step9.index) == set(other.index) and "loss" in set(step9.index)
    for metric in other.index:
        assert step9[metric] == pytest.approx(other[metric], rel=1e-9), metric
    assert abs(raw[raw.step == 7].set_index("metric").value["loss"] - step9["loss"]) > 1e-4  # other weights


def test_diffs_over_two_raw_tags_give_the_norm_of_the_masters_change(tmp_path, monkeypatch):
    written = raw_save_dir(tmp_path, monkeypatch, vocab=64)
    save = tmp_path / "neox-ckpt-pythia-tiny"
    out = tmp_path / "diffs"
    result = run_cli(
        "parc.dynamics", "diffs", f"runs=neox:{save / 'global_step7'},neox:{save / 'global_step9'}", f"out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    revisions = pd.read_parquet(out / "diffs-revisions.parquet").set_index("step")
    rows = pd.read_parquet(out / "diffs.parquet")
    assert list(revisions.index) == [7, 9] and set(revisions.source) == {f"neox:{save.resolve()}"}

    def relative(names) -> float:
        before = torch.cat([written[7][n][0].double().flatten() for n in names])
        after = torch.cat([written[9][n][0].double().flatten() for n in names])
        return float((after - before).norm() / before.norm())

    assert revisions.loc[9, "rel_prev"] == pytest.approx(relative(list(written[7])), rel=1e-9)
    assert np.isnan(revisions.loc[7, "rel_prev"]) or revisions.loc[7, "rel_prev"] is None
    layer0 = [n for n in written[7] if hf_name(n, LAYERS).startswith("gpt_neox.layers.0.")]
    (row,) = rows[(rows.step == 9) & (rows.group == "gpt_neox.layers.0")].to_dict("records")
    assert row["rel_prev"] == pytest.approx(relative(layer0), rel=1e-9)
    missing = run_cli("parc.dynamics", "diffs", f"runs=neox:{tmp_path / 'nowhere'}", f"out={tmp_path / 'y'}")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and not (tmp_path / "y").exists()


# --- resume=neox:hub:<org/name>@<rev>: a raw branch fetched from the (local) Hub, verified, read ----------------------

FETCH_AND_READ = """
import json, sys
from pathlib import Path
import torch
from parc.errors import ParcError
from parc.store.neox_raw import read_raw
from parc.training import neox_source
args = json.loads(sys.argv[1])
try:
    start = neox_source.parse(args["spec"], Path(args["out"]))  # what resume= and init_from= call
except ParcError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
raw = read_raw(start.path)
torch.save(raw.weights, args["weights"])
print(json.dumps({"path": str(start.path), "source": start.source, "iteration": raw.iteration,
                  "format": raw.format}))
"""


def fetch_and_read(hub, spec: str, out: Path, weights: Path) -> dict:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **hub.env()}
    env.pop("HF_TOKEN", None)
    args = json.dumps({"spec": spec, "out": str(out), "weights": str(weights)})
    done = subprocess.run(
        [sys.executable, "-c", FETCH_AND_READ, args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_raw_hub_branch_is_fetched_verified_by_lfs_sha256_and_read_as_resume_reads_it(
    hub_server, tmp_path, monkeypatch
):
    import hashlib

    from parc.store.neox_raw import read_raw

    from hub_server import Repo

    raw_save_dir(tmp_path, monkeypatch, vocab=64)
    tag = tmp_path / "neox-ckpt-pythia-tiny" / "global_step7"
    files = {p.name: p.read_bytes() for p in sorted(tag.iterdir())}
    attributes = {".gitattributes": b"*.pt filter=lfs diff=lfs merge=lfs -text\n"}
    repo_id = "EleutherAI/neox-ckpt-pythia-tiny"
    hub_server.state.repos[repo_id] = Repo(private=False)
    hub_server.state.commit(repo_id, "main", attributes)
    for branch in ("step7", "step7-bad"):
        hub_server.state.commit(repo_id, branch, {**attributes, **files})
    listed = hub_server.state.repos[repo_id]
    stored = listed.commits[listed.branches["step7-bad"]]  # an LFS object gone bad (same size)
    bad = "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    stored[bad] = bytes([stored[bad][0] ^ 0xFF]) + stored[bad][1:]

    out = tmp_path / "downloads"
    found = fetch_and_read(hub_server, f"neox:hub:{repo_id}@step7", out, tmp_path / "weights.pt")
    assert found["source"] == f"neox:hub:{repo_id}@step7" and found["iteration"] == 7
    assert found["format"] == "deeperspeed-0.3.15"
    fetched = Path(found["path"])
    assert fetched == out / repo_id.replace("/", "--") / "step7"
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in fetched.iterdir() if p.is_file()} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }
    local = read_raw(tag).weights
    remote = torch.load(tmp_path / "weights.pt")
    assert set(remote) == set(local) and all(torch.equal(remote[n], local[n]) for n in local)

    refused = fetch_and_read(hub_server, f"neox:hub:{repo_id}@step7-bad", out, tmp_path / "unused.pt")
    assert f"{bad} does not match the LFS sha256 the Hub lists" in refused["error"]
    assert "\n" not in refused["error"] and not (out / repo_id.replace("/", "--") / "step7-bad").exists()
