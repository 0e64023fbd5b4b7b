"""Checkpoint diffs (parc.hub.weightdiff via `parc.dynamics diffs` and `parc.revisions --audit --diffs`): a repo
on the local Hub server where planted revisions are byte-copies of the final weights; the planted ones are
flagged, the others not; the relative changes equal a direct numpy computation; a local demo run too."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save

from parc.hub.weightdiff import CHUNK_ELEMENTS, group_of, local_revisions, monotone_keep, weight_diffs

from conftest import run_cli
from hub_server import Repo, hub_server  # noqa: F401  (the fixture)

REPO_ID = "org/planted"
STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
PLANTED = [30, 70]
SHAPES = {
    "gpt_neox.embed_in.weight": (50, 16),
    "gpt_neox.layers.0.attention.dense.weight": (16, 16),
    "gpt_neox.layers.0.attention.dense.bias": (16,),
    "gpt_neox.layers.1.mlp.dense_h_to_4h.weight": (64, 16),
    "embed_out.weight": (50, 16),
}


def random_walk():
    """step -> tensors: init plus independent Gaussian updates, so ||W_t - W_0|| grows with t."""
    rng = np.random.default_rng(0)
    weights = {0: {k: rng.normal(0, 1, s).astype(np.float32) for k, s in SHAPES.items()}}
    for before, step in zip(STEPS, STEPS[1:]):
        weights[step] = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in weights[before].items()}
    return weights


def direct(a: dict, b: dict, keys=None) -> float:
    keys = keys or sorted(a)
    num = sum(((b[k].astype(np.float64) - a[k]) ** 2).sum() for k in keys)
    return float(np.sqrt(num / sum((a[k].astype(np.float64) ** 2).sum() for k in keys)))


@pytest.fixture
def planted_repo(hub_server):
    weights = random_walk()
    hub_server.state.repos[REPO_ID] = Repo(private=False)
    hub_server.state.commit(REPO_ID, "main", {".gitattributes": b"*.safetensors filter=lfs\n"})
    final = save(weights[STEPS[-1]])
    for step in STEPS:
        data = final if step in PLANTED else save(weights[step])
        hub_server.state.commit(
            REPO_ID, f"step{step}", {"config.json": b'{"model_type": "gpt_neox"}', "model.safetensors": data}
        )
    return hub_server, weights


def test_planted_copies_of_the_final_weights_are_flagged_and_only_they(planted_repo, tmp_path):
    hub, weights = planted_repo
    out = tmp_path / "out"
    done = run_cli("parc.dynamics", "diffs", f"runs=hub:{REPO_ID}", f"out={out}", env=hub.env(), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    revisions = pd.read_parquet(out / "diffs-revisions.parquet")
    flagged = revisions[revisions["flags"] != ""]
    assert flagged["step"].tolist() == PLANTED
    assert flagged["equals_final"].all() and flagged["non_monotone"].all()
    assert (
        not revisions[~revisions["step"].isin(PLANTED)][["identical_to_previous", "equals_final", "non_monotone"]]
        .any()
        .any()
    )

    served = {s: weights[STEPS[-1]] if s in PLANTED else weights[s] for s in STEPS}
    rows = pd.read_parquet(out / "diffs.parquet")
    for before, step in zip(STEPS, STEPS[1:]):
        at = rows[rows["step"] == step].set_index("group")
        assert at.loc["all", "rel_prev"] == pytest.approx(direct(served[before], served[step]), rel=1e-9)
        assert at.loc["all", "rel_init"] == pytest.approx(direct(served[0], served[step]), rel=1e-9)
        layer0 = [k for k in SHAPES if ".layers.0." in k]
        assert at.loc["gpt_neox.layers.0", "rel_prev"] == pytest.approx(
            direct(served[before], served[step], layer0), rel=1e-9
        )
    assert set(rows["group"]) == {"all", "gpt_neox.embed_in", "gpt_neox.layers.0", "gpt_neox.layers.1", "embed_out"}
    assert (out / "diffs-org--planted.png").is_file()

    audited = run_cli(
        "parc.revisions",
        REPO_ID,
        "audit=true",
        "diffs=true",
        "json=true",
        env={**hub.env(), "HF_TOKEN": ""},
        timeout=240,
    )
    assert audited.returncode == 1, audited.stderr[-3000:]
    report = json.loads(audited.stdout)
    assert report["diff_flags"] == PLANTED and report["duplicates"] == [PLANTED + [STEPS[-1]]]
    assert [row["step"] for row in report["diffs"]] == STEPS


def test_a_local_run_matches_numpy_and_slices_stay_below_one_tensor(eval_grid, monkeypatch):
    from safetensors.numpy import load_file

    run = eval_grid / "pythia-seed0-shard0"
    monkeypatch.setattr("parc.hub.weightdiff.CHUNK_ELEMENTS", 100)  # many slices per tensor: same numbers
    diffs = weight_diffs(local_revisions(run))
    assert CHUNK_ELEMENTS > 100 and diffs["flagged"] == []
    tensors = {s: load_file(run / f"checkpoint-{s}" / "model.safetensors") for s in (0, 4, 8)}
    totals = {r["step"]: r for r in diffs["revisions"]}
    assert totals[4]["rel_prev"] == pytest.approx(direct(tensors[0], tensors[4]), rel=1e-9)
    assert totals[8]["rel_prev"] == pytest.approx(direct(tensors[4], tensors[8]), rel=1e-9)
    assert totals[8]["rel_init"] == pytest.approx(direct(tensors[0], tensors[8]), rel=1e-9)


def test_identical_consecutive_revisions_and_groups(tmp_path):
    assert group_of("gpt_neox.layers.11.mlp.dense_4h_to_h.weight") == "gpt_neox.layers.11"
    assert (
        group_of("backbone.layers.3.mixer.A_log") == "backbone.layers.3"
        and group_of("rwkv.blocks.0.ln1.weight") == "rwkv.blocks.0"
    )
    assert group_of("embed_out.weight") == "embed_out"
    assert monotone_keep([0, 0.1, 0.9, 0.2, 0.3, 0.9], 0.02) == [True, True, False, True, True, True]
    from parc.hub.weightdiff import Revision

    weights = random_walk()
    paths = {}
    for step in (0, 10, 20):
        paths[step] = tmp_path / f"{step}.safetensors"
        paths[step].write_bytes(save(weights[0 if step == 10 else step]))  # step 10 = a copy of init
    revisions = [Revision(s, f"step{s}", lambda s=s: [paths[s]]) for s in (0, 10, 20)]
    flags = {r["step"]: r["flags"] for r in weight_diffs(revisions)["revisions"]}
    assert flags == {0: [], 10: ["identical to the previous revision"], 20: []}


def peak_anonymous_mib(work) -> float:
    """Peak increase of the process's anonymous memory (RssAnon: not the mapped file pages) while `work` runs."""
    import threading
    import time

    def anon() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024

    base, peak, stop = anon(), [0.0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], anon())
            time.sleep(0.001)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        work()
    finally:
        stop.set()
        thread.join()
    return peak[0] - base


def test_memory_stays_below_the_largest_tensor(tmp_path):
    """Two revisions of one 64 MiB tensor: streaming them costs a fraction of it; one float64 copy of it costs
    128 MiB (so the measurement sees what it should)."""
    import torch  # noqa: F401  (imported before measuring)
    from safetensors.numpy import load_file

    from parc.hub.weightdiff import Revision

    rng = np.random.default_rng(0)
    paths = []
    for step in (0, 1):
        path = tmp_path / f"{step}.safetensors"
        path.write_bytes(save({"layers.0.weight": rng.normal(size=(4096, 4096)).astype(np.float32)}))
        paths.append(path)
    revisions = [Revision(s, f"step{s}", lambda s=s: [paths[s]]) for s in (0, 1)]
    streamed = peak_anonymous_mib(lambda: weight_diffs(revisions))
    # what a whole-tensor diff in float64 holds (safetensors maps the file; the copy is anonymous memory)
    loaded = peak_anonymous_mib(lambda: load_file(paths[0])["layers.0.weight"].astype(np.float64).sum())
    assert loaded >= 120 and streamed < 16, (streamed, loaded)
