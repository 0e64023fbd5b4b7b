"""Representation similarity (parc.study.dynamics): debiased linear CKA against a hand implementation with n x n
Gram matrices (Song et al.'s unbiased HSIC as written in Nguyen et al. 2021), its invariances, effective rank
against numpy's SVD, and `parc.dynamics similarity` on the tiny real checkpoints of the session's demo grid
(Pythia and Mamba) against hidden states computed here with transformers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from parc.study.dynamics.cka import effective_rank, linear_cka

from conftest import run_cli, run_cli_cases
from hub_server import hub_server  # noqa: F401  (the fixture)


def hand_hsic(K: np.ndarray, L: np.ndarray) -> float:
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (
        np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ K @ L @ one)
    ) / (n * (n - 3))


def hand_cka(x: np.ndarray, y: np.ndarray) -> float:
    K, L = x @ x.T, y @ y.T
    return hand_hsic(K, L) / np.sqrt(hand_hsic(K, K) * hand_hsic(L, L))


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12))
    y = x @ rng.normal(size=(12, 9)) + 0.5 * rng.normal(size=(60, 9)) + 3.0  # related, off-centre
    return x, y


def test_cka_equals_the_gram_matrix_formula(pair):
    x, y = pair
    assert linear_cka(x, y) == pytest.approx(hand_cka(x, y), rel=1e-10)
    rng = np.random.default_rng(1)
    independent = rng.normal(size=(60, 7))
    assert linear_cka(x, independent) == pytest.approx(hand_cka(x, independent), rel=1e-9, abs=1e-12)
    assert abs(linear_cka(x, independent)) < 0.1  # debiased: near 0 for unrelated features


def test_cka_is_one_on_itself_and_invariant_to_rotation_and_isotropic_scaling(pair):
    x, y = pair
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q_x, q_y = ortho_group.rvs(12, random_state=2), ortho_group.rvs(9, random_state=3)
    base = linear_cka(x, y)
    assert linear_cka(x @ q_x, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x @ q_x * 7.5, y @ q_y * 0.01) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, y @ np.diag(np.linspace(0.1, 10, 9))) != pytest.approx(base, rel=1e-3)  # not any linear map


def test_effective_rank_matches_numpy_svd(pair):
    x, _ = pair
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    assert effective_rank(x) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    rng = np.random.default_rng(4)
    low = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 20))  # rank 3 in 20 dimensions
    assert 1.0 < effective_rank(low) <= 3.0 + 1e-9
    assert effective_rank(np.eye(10) * 4) == pytest.approx(9.0, rel=1e-9)  # centred identity: 9 equal singular values


def test_similarity_on_tiny_real_checkpoints_matches_transformers(eval_grid, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from parc.data.stream import PackedStream, read_manifest
    from parc.study.evaluations.heldout import training_slice
    from parc.study.sources.runs import local_run_config

    out = tmp_path / "sim"
    runs = ",".join(str(eval_grid / r) for r in ("pythia-seed0-shard0", "pythia-seed1-shard0", "mamba-seed0-shard0"))
    for target in (out, tmp_path / "again"):
        done = run_cli(
            "parc.dynamics",
            "similarity",
            f"runs={runs}",
            "steps=0,8",
            "sequences=6",
            "max_tokens=0",
            f"out={target}",
            "eval.batch_size=4",
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "per checkpoint" in done.stdout
    assert (out / "similarity.parquet").read_bytes() == (tmp_path / "again" / "similarity.parquet").read_bytes()
    table = pd.read_parquet(out / "similarity.parquet")
    assert list(table.columns[:6]) == ["a", "b", "layer_a", "layer_b", "metric", "value"]
    assert set(table["kind"]) == {"checkpoint", "steps", "seeds", "archs"}
    for name in ("similarity-seeds", "similarity-steps", "similarity-archs", "effective-rank"):
        assert (out / f"{name}.png").is_file(), name

    # the same numbers from hidden states computed here, on the held-out slice parc.evaluate would use
    stream_dir = eval_grid.parents[1] / "data" / "demo-parc-128"
    stream = PackedStream(stream_dir, read_manifest(stream_dir))
    start = max(training_slice(local_run_config(eval_grid / r))[1] for r in runs.split(","))
    ids = torch.from_numpy(stream.sequences(np.arange(start, start + 6)).astype(np.int64))

    def states(run, step):
        model = AutoModelForCausalLM.from_pretrained(eval_grid / run / f"checkpoint-{step}", dtype=torch.float32).eval()
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        return [h.reshape(-1, h.shape[-1]).double().numpy() for h in hidden]

    p0, p1, m0 = states("pythia-seed0-shard0", 8), states("pythia-seed1-shard0", 8), states("mamba-seed0-shard0", 8)
    seeds = table[(table["kind"] == "seeds") & (table["step_a"] == 8)].set_index("layer_a")["value"]
    assert seeds.to_numpy() == pytest.approx([linear_cka(a, b) for a, b in zip(p0, p1)], abs=1e-4)
    archs = table[(table["kind"] == "archs") & (table["step_a"] == 8) & (table["seed_a"] == 0)]
    assert len(archs) == len(m0) * len(p0)  # every layer with every layer
    got = archs.set_index(["layer_a", "layer_b"])["value"]  # a = mamba (sorted by arch), b = pythia seed 0
    assert got[(1, 2)] == pytest.approx(linear_cka(m0[1], p0[2]), abs=1e-4)
    ranks = table[(table["metric"] == "effective_rank") & (table["a"] == "pythia-seed0-shard0@checkpoint-8")]
    assert ranks["value"].to_numpy() == pytest.approx([effective_rank(h) for h in p0], rel=1e-4)
    steps = table[(table["kind"] == "steps") & (table["a"] == "pythia-seed0-shard0@checkpoint-0")]
    assert (steps["b"] == "pythia-seed0-shard0@checkpoint-8").all()


@pytest.mark.slow
def test_hub_revisions_give_the_numbers_of_the_local_run(hub_server, eval_grid, tmp_path):
    """The same run read from the local Hub server (a Parc repo, and a foreign one without manifests) gives the
    CKA, effective ranks and weight diffs of the local run."""
    from test_evaluate import put_revision

    run = eval_grid / "pythia-seed1-shard0"
    for step in (0, 4, 8):
        put_revision(hub_server, "org/demo-pythia-seed1-shard0", f"checkpoint-{step}", run / f"checkpoint-{step}")
        put_revision(
            hub_server,
            "lab/tinylm-seed7",
            f"step{step}",
            run / f"checkpoint-{step}",
            skip=("parc_checkpoint.json", "training_state"),
        )
    put_revision(
        hub_server, "lab/tinylm-seed7", "main", run / "checkpoint-8", skip=("parc_checkpoint.json", "training_state")
    )
    stream_dir = eval_grid.parents[1] / "data" / "demo-parc-128"
    args = [
        "pairs=steps",
        "sequences=5",
        "max_tokens=300",
        f"eval.heldout.data_dir={stream_dir}",
        "eval.heldout.start=14000",
    ]
    tables = {}
    sources = (("local", str(run)), ("parc", "hub:org/demo-pythia-seed1-shard0"), ("foreign", "hub:lab/tinylm-seed7"))
    results = run_cli_cases(
        "parc.dynamics",
        [["similarity", f"runs={runs}", *args, f"out={tmp_path / name}"] for name, runs in sources],
        env=hub_server.env(),
    )  # one interpreter
    for (name, _), done in zip(sources, results):
        assert done.returncode == 0, done.stderr[-3000:]
        tables[name] = (
            pd.read_parquet(tmp_path / name / "similarity.parquet")
            .sort_values(["metric", "step_a", "step_b", "layer_a", "layer_b"])["value"]
            .to_numpy()
        )
        assert len(tables[name]) == 3 * 3 + 2 * 3  # 3 checkpoints x 3 layers of ranks, 2 pairs x 3 layers of CKA
    assert np.allclose(tables["parc"], tables["local"], rtol=1e-9) and np.allclose(
        tables["foreign"], tables["local"], rtol=1e-9
    )

    diffs = {}
    sources = (("local", str(run)), ("foreign", "hub:lab/tinylm-seed7"))
    results = run_cli_cases(
        "parc.dynamics",
        [["diffs", f"runs={runs}", f"out={tmp_path / ('d' + name)}"] for name, runs in sources],
        env={**hub_server.env(), "HF_TOKEN": ""},
    )
    for (name, _), done in zip(sources, results):
        assert done.returncode == 0, done.stderr[-3000:]
        diffs[name] = pd.read_parquet(tmp_path / ("d" + name) / "diffs.parquet").sort_values(["step", "group"])
    assert np.allclose(diffs["foreign"]["rel_init"], diffs["local"]["rel_init"], rtol=1e-12)
    assert diffs["foreign"]["rel_prev"].isna().sum() == diffs["local"]["rel_prev"].isna().sum()
