"""Model cards (parc.hub.card, python -m parc.card): the card loads with huggingface_hub's ModelCard, its metadata
validates offline, and for a demo Parc-Pythia seed-0 run it states what the Parc-Pythia card states (architecture,
seed, data, steps x batch, checkpoint naming), each compared with values computed here from the run's own files.
Against the local Hub server: a publishing run ends with README.md in main's one final commit; parc.sync refreshes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from parc.store.checkpoint import MANIFEST

from conftest import run_cli_cases
from hub_server import card_metadata_problems, hub_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(1800)  # the first test may train the session's demo grid (conftest eval_grid)


def copy_grid(
    eval_grid: Path, tmp_path: Path, names=("pythia-seed0-shard0", "pythia-seed1-shard0", "mamba-seed0-shard0")
) -> Path:
    grid = tmp_path / "grid"
    for name in names:
        shutil.copytree(eval_grid / name, grid / name)
    return grid


def read_results(grid: Path, run: Path, step: int) -> dict:
    import pandas as pd

    table = pd.read_parquet(grid / "evals" / "results.parquet")
    rows = table[(table["source"] == str(run.resolve())) & (table["step"] == step)]
    return {(r.evaluation, r.task, r.metric): float(r.value) for r in rows.itertuples()}


def parameter_counts(checkpoint: Path) -> tuple:
    """Total and non-embedding parameters of the real model loaded from the checkpoint."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return total, total - embedding


def test_the_card_of_a_demo_parc_pythia_seed0_run_states_its_facts(eval_grid, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    grid = copy_grid(eval_grid, tmp_path)
    run, mamba = grid / "pythia-seed0-shard0", grid / "mamba-seed0-shard0"
    cases = run_cli_cases(
        None,
        [
            ["parc.evaluate", f"runs={run}", "steps=8"],
            ["parc.card", str(run)],
            ["parc.card", str(run), f"out={tmp_path / 'again'}"],
            ["parc.card", str(mamba), f"out={tmp_path / 'mamba'}"],
            ["parc.card", "--help"],
            ["parc.card", str(tmp_path / "nothing")],
            ["parc.card", str(run), "extra"],
        ],
    )
    assert [c.returncode for c in cases[:5]] == [0] * 5, [c.stderr[-2000:] for c in cases]
    assert "python -m parc.card <run output_dir>" in cases[4].stdout
    for refused in cases[5:]:
        assert refused.returncode == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert not (tmp_path / "nothing").exists()

    config = yaml.safe_load((run / "config.yaml").read_text())
    trainer, data = config["trainer"], config["data"]
    card = ModelCard.load(run / "README.md")
    text = card.text

    # metadata: the suites' keys, valid for huggingface_hub (re-parsed from the YAML alone)
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"] and meta["library_name"] == "transformers"
    assert "base_model" not in meta and "datasets" not in meta  # no init_from; the demo corpus is no Hub dataset
    assert {"parc", "pythia", "seed-0"} <= set(meta["tags"])
    ModelCardData(**meta)
    assert card_metadata_problems(str(card)) == ([], [])  # the Hub's rules, as the test Hub applies them on commit
    broken = str(card).replace("    - type: loss\n      value: ", "    - type: loss\n      value: [")
    assert card_metadata_problems(broken)[0]
    name, results = model_index_to_eval_results(meta["model-index"])
    expected = read_results(grid, run, 8)  # what parc.evaluate wrote for the final step, read here
    assert (
        len(expected) == 3
        and {(r.task_name, r.dataset_type, r.metric_type): r.metric_value for r in results} == expected
    )
    assert name == "Parc-demo-Pythia (Seed 0)" and text.startswith(f"\n# {name}")

    # the facts the Parc-Pythia card states, from config.yaml and the checkpoints
    total, non_embedding = parameter_counts(run / "checkpoint-8")
    steps, batch, seq = trainer["max_steps"], trainer["global_batch_size"], data["seq_len"]
    checkpoints = sorted((int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")))
    for fact in [
        "Model type: Pythia (GPT-NeoX",
        f"{config['arch']['tiny']['num_hidden_layers']} layers",
        f"seed **{config['seed']}**",
        f"shard **{data['shard']}**",
        "data seed **none**",
        f"Parameters: {total:,} in total, {non_embedding:,} non-embedding",
        f"({data['data_files']})",
        f"Context length: {seq} tokens",
        f"Effective batch size: {batch} sequences",
        f"Total training steps: {steps}",
        f"Total tokens: {steps} x {batch} x {seq} = {steps * batch * seq:,}",
        f"Learning rate: {trainer['lr']}, warmup {trainer['warmup_steps']} steps",
        "Learning rate scheduler: cosine",
        f"Precision: {trainer['precision']}",
        f"weight decay {trainer['weight_decay']}",
        f'revision="checkpoint-{steps}"',
        f"{len(checkpoints)} checkpoints, one Hub branch each, named `checkpoint-{{N}}`",
        ", ".join(f"`checkpoint-{s}`" for s in checkpoints) + ".",
        "![Training loss per step](loss_curve.png)",
        "| pythia | tiny | 1 | 0 | none |",
        "| mamba | tiny | 0 | 0 | none |",
        "@inproceedings{michaelov",
    ]:
        assert fact in text, fact
    loss = expected[("heldout", data["dir"], "loss")]
    assert f"| heldout | {data['dir']} | loss | {loss:.4g} |" in text

    png = (run / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # a pure function of the run's files: written again, byte for byte the same (a refresh then commits nothing)
    assert (tmp_path / "again" / "README.md").read_bytes() == (run / "README.md").read_bytes()
    assert (tmp_path / "again" / "loss_curve.png").read_bytes() == png

    other = ModelCard.load(tmp_path / "mamba" / "README.md")
    total, non_embedding = parameter_counts(mamba / "checkpoint-8")
    assert "Model type: Mamba" in other.text and f"Parameters: {total:,} in total" in other.text
    assert "model-index" not in other.data.to_dict()  # mamba was not evaluated: no results claimed
    ModelCardData(**other.data.to_dict())


PUBLISH = """
import json, sys
from pathlib import Path
from parc.config import compose
from parc.hub.publisher import Publisher
args = json.loads(sys.argv[1])
out = Path(args["out"])
publisher = Publisher.from_config(compose(args["overrides"]), out, True)
publisher.start()
for step in (0, 4, 8):
    publisher.submit(step, out / f"checkpoint-{step}")
print("left", publisher.close(8))
"""


def test_a_published_run_ends_with_its_card_in_main_s_final_commit_and_sync_refreshes_it(
    hub_server, eval_grid, tmp_path
):
    from huggingface_hub import ModelCard

    grid = copy_grid(eval_grid, tmp_path, names=("pythia-seed0-shard0",))
    run, repo_id = grid / "pythia-seed0-shard0", "org/card-demo"
    overrides = [
        "experiment=demo",
        f"paths.root={tmp_path}",
        f"output_dir={run}",
        f"hub.repo_id={repo_id}",
        "hub.retry_initial_s=0.05",
        "hub.max_commits_per_hour=360000",
        "trainer.max_steps=8",
    ]
    env = {**os.environ, **hub_server.env()}
    published = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PUBLISH), json.dumps({"out": str(run), "overrides": overrides})],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert published.returncode == 0 and "left 0" in published.stdout, published.stderr[-3000:]

    state, repo = hub_server.state, hub_server.state.repos[repo_id]
    assert state.branch_commits(repo_id, "main") == ["main: weights and training state"]  # ONE commit: no extra
    added = [changed for branch, changed, _ in repo.history if branch == "main"][-1]
    assert {"README.md", "loss_curve.png", MANIFEST, "model.safetensors"} <= set(added)  # ... and it holds the card
    main = state.files(repo_id, "main")
    local = {str(p.relative_to(run / "checkpoint-8")) for p in (run / "checkpoint-8").rglob("*") if p.is_file()}
    assert set(main) == local | {"README.md", "loss_curve.png", ".gitattributes"}
    assert json.loads(main[MANIFEST]) == json.loads((run / "checkpoint-8" / MANIFEST).read_text())  # main = final
    for branch in ("checkpoint-0", "checkpoint-4", "checkpoint-8"):
        assert "README.md" not in state.files(repo_id, branch)
    card = ModelCard(main["README.md"].decode())
    assert f'from_pretrained("{repo_id}", revision="checkpoint-8")' in card.text
    assert "No results yet" in card.text and "model-index" not in card.data.to_dict()
    assert str(tmp_path).encode() not in main["README.md"]  # no local path published
    assert hub_server.count("POST", r"^/api/validate-yaml$") == 1  # the client had the metadata checked, and it passed

    # evaluations arrive after the run: parc.sync puts them in the card (one commit), then has nothing to do
    cases = run_cli_cases(
        None,
        [["parc.evaluate", f"runs={run}", "steps=8"], ["parc.sync", str(run)], ["parc.sync", str(run)]],
        env=hub_server.env(),
    )
    assert [c.returncode for c in cases] == [0, 0, 0], [c.stderr[-2000:] for c in cases]
    assert "model card on main of org/card-demo: updated" in cases[1].stdout
    assert "model card on main of org/card-demo: up to date" in cases[2].stdout
    assert state.branch_commits(repo_id, "main") == ["main: model card", "main: weights and training state"]
    assert [changed for branch, changed, _ in repo.history if branch == "main"][-1] == ["README.md"]
    refreshed = ModelCard(state.files(repo_id, "main")["README.md"].decode())
    loss = read_results(grid, run, 8)[("heldout", "demo-parc-128", "loss")]
    assert [r.metric_value for r in refreshed.data.eval_results if r.metric_type == "loss"] == [loss]
