"""`python -m parc.evaluate eval=memorization` on a demo grid: the exact training sequences (seq_step, seq_row
as parc.data.stream.BatchPlan gives them), scores equal to `model.generate` scoring, a sample shared by every
run; and the grid's results plot and compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import image
from omegaconf import OmegaConf

from parc.data.stream import BatchPlan, open_stream
from parc.study.evaluations.greedy import generate_continuations

from conftest import run_cli


@pytest.fixture(scope="module")
def memorization_evals(eval_grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("evals")
    result = run_cli(
        "parc.evaluate",
        "eval=memorization",
        f"runs={eval_grid}",
        f"out={out}",
        "eval.sample=20",
        "eval.prompt_len=16",
        "eval.continuation_len=16",
        "eval.batch_size=8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return eval_grid, out


def test_memorization_scores_the_training_sequences_as_generate_does(memorization_evals):
    import torch
    from transformers import AutoModelForCausalLM

    grid, out = memorization_evals
    table = pd.read_parquet(out / "results.parquet")
    examples = pd.read_parquet(out / "examples" / "memorization.parquet")
    assert set(table["metric"]) == {"memorized", "score"} and sorted(table["step"].unique()) == [0, 4, 8]
    assert table[table.step == 0]["n"].eq(0).all() and table[table.step == 0]["value"].isna().all()
    assert table[table.step == 4]["n"].eq(20).all()  # 4 updates x 16 sequences, 20 sampled
    # The same training positions for every run at a step (a sample shared by the grid), consumed by then.
    at8 = examples[examples.step == 8]
    positions = {source: tuple(rows.example_id) for source, rows in at8.groupby("source")}
    assert len(set(positions.values())) == 1 and len(positions) == 3
    assert (at8.seq_step <= 8).all() and (at8.seq_step == at8.example_id // 16 + 1).all()

    run = grid / "pythia-seed1-shard0"
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.data.dir = str(grid.parents[1] / "data" / cfg.data.dir)
    plan = BatchPlan.from_config(cfg, open_stream(cfg))
    mine = at8[at8.source == str(run)].sort_values("example_id")
    sequences = np.stack([plan.batch(int(s))[int(r)] for s, r in zip(mine.seq_step, mine.seq_row)])
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoint-8").eval()
    with torch.inference_mode():
        generated = generate_continuations(model, sequences[:, :16], 16, batch_size=4)
    expected = (generated == sequences[:, 16:32]).mean(axis=1)
    np.testing.assert_allclose(mine.score.to_numpy(), expected)
    row = table[(table.source == str(run)) & (table.step == 8) & (table.metric == "score")]
    assert row.value.item() == pytest.approx(expected.mean())


def test_grid_results_plot_and_compare(memorization_evals, tmp_path):
    _, out = memorization_evals
    result = run_cli("parc.plot", "evals", str(out), f"out={tmp_path}")
    assert result.returncode == 0, result.stderr
    pixels = image.imread(tmp_path / "evals-memorization.png")
    assert pixels.shape[1] == pytest.approx(2 * 4.6 * 120, abs=2)  # two panels: memorized, score
    compared = run_cli(
        "parc.compare", str(out), "metric=score", "a=arch=pythia", "b=arch=mamba", "step=8", "samples=200"
    )
    assert compared.returncode == 0, compared.stderr
    assert "95% CI over seeds and examples" in compared.stdout
