"""The seed outlier alarm (parc.training.outliers): synthetic metrics of 6 seeds with one planted outlier, through
the leave-one-out median/MAD rule against numpy, `parc.grid status` (its outlier column) and `parc.dynamics
outliers` (training loss and an evaluated metric)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_grid import make_cell

from parc.training.outliers import robust_z, seed_outliers

from conftest import run_cli

STEPS = list(range(1, 101))


def curves(planted_seed: int, jump_at: int, size: float, seeds=range(6), seed=0):
    rng = np.random.default_rng(seed)
    common = 10 * np.exp(-np.array(STEPS) / 30) + 2
    found = {}
    for s in seeds:
        values = common + rng.normal(0, 0.02, len(STEPS))
        if s == planted_seed:
            values = values + size * (np.array(STEPS) >= jump_at)
        found[s] = dict(zip(STEPS, values))
    return found


def test_the_planted_seed_is_flagged_from_its_jump_and_no_other():
    data = curves(planted_seed=3, jump_at=60, size=0.5)
    found = seed_outliers(data, k=5)
    assert [s for s, o in found.items() if o.flagged] == [3]
    assert found[3].first_step == 60 and found[3].steps_over == 41 and found[3].max_z > 5
    others = np.array([data[s][70] for s in (0, 1, 2, 4, 5)])
    median = np.median(others)
    z = (data[3][70] - median) / (1.4826 * np.median(np.abs(others - median)))
    assert robust_z(data[3][70], others) == pytest.approx(z)
    assert all(abs(o.max_z) < 5 for s, o in found.items() if s != 3)
    assert not any(o.flagged for o in seed_outliers(curves(3, 60, 0.0), k=5).values())  # nothing planted: quiet
    four = seed_outliers({s: c for s, c in data.items() if s in (0, 1, 2, 3)}, k=5)  # four seeds: three others
    assert [s for s, o in four.items() if o.flagged] == [3] and four[3].first_step == 60
    three = seed_outliers({s: c for s, c in data.items() if s in (0, 1, 3)}, k=5)  # two others: too few to judge by
    assert not any(o.flagged or o.steps_compared for o in three.values())


def write_grid(root, planted_seed=4):
    data = curves(planted_seed=planted_seed, jump_at=40, size=1.0)
    for seed, curve in data.items():
        cell = make_cell(root, "pythia", seed, max_steps=100, steps=100, checkpoints=(0,))
        rows = [{"step": s, "loss": v, "lr": 1e-3, "tokens": 128 * s} for s, v in curve.items()]
        (cell / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    make_cell(root, "mamba", 0, max_steps=100, steps=100, checkpoints=(0,))  # alone: nothing to compare with
    return data


def test_grid_status_has_an_outlier_column(tmp_path):
    root = tmp_path / "runs" / "demo"
    write_grid(root)
    done = run_cli("parc.grid", "status", f"root={root}", "seeds=0-5", "archs=pythia,mamba", "json=true")
    assert done.returncode == 0, done.stderr[-2000:]
    cells = {(c["arch"], c["seed"]): c for c in json.loads(done.stdout)["cells"]}
    assert cells[("pythia", 4)]["outlier"].startswith("z=+") and "@ 40" not in cells[("pythia", 4)]["outlier"][:0]
    assert [key for key, c in cells.items() if c["outlier"]] == [("pythia", 4)]
    table = run_cli("parc.grid", "status", f"root={root}", "seeds=0-5", "archs=pythia,mamba")
    assert table.returncode == 0 and "outlier" in table.stdout and "z=+" in table.stdout


def test_dynamics_outliers_reports_loss_and_evaluated_metrics(tmp_path):
    root = tmp_path / "runs" / "demo"
    write_grid(root, planted_seed=4)
    evaluated = curves(planted_seed=1, jump_at=80, size=-0.4, seed=1)  # another seed, another metric
    rows = [
        {
            "arch": "pythia",
            "size": "tiny",
            "seed": s,
            "step": step,
            "evaluation": "heldout",
            "task": "demo",
            "metric": "loss",
            "value": v,
            "source": str(root / f"pythia-seed{s}-shard0"),
        }
        for s, curve in evaluated.items()
        for step, v in curve.items()
        if step % 10 == 0
    ]
    evals = tmp_path / "evals"
    evals.mkdir()
    pd.DataFrame(rows).to_parquet(evals / "results.parquet")
    done = run_cli("parc.dynamics", "outliers", f"runs={root}", f"evals={evals}", "k=5", f"out={tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "out" / "outliers.parquet")
    flagged = table[table["flagged"]]
    assert sorted(zip(flagged["series"], flagged["seed"])) == [("heldout demo loss", 1), ("training loss", 4)]
    assert flagged.set_index("seed").loc[1, "first_step"] == 80 and flagged.set_index("seed").loc[4, "first_step"] == 40
    assert "OUTLIER pythia-seed4-shard0" in done.stdout
    bad = run_cli("parc.dynamics", "outliers", f"runs={root}", "k=-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
