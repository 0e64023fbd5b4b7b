"""slurm/eval_array.sbatch on the real local Slurm cluster: two array tasks evaluate a grid's checkpoints into one
table, identical to a single-process evaluation."""

from __future__ import annotations

import pytest
from test_slurm import Cluster, slurm_conf, submit  # noqa: F401  (slurm_conf is the session fixture)

from conftest import REPO, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(1800)]

EVAL = REPO / "slurm" / "eval_array.sbatch"


def test_array_tasks_write_one_table_equal_to_one_process(slurm_conf, eval_grid, tmp_path):
    args = [f"runs={eval_grid}", "steps=4,8", "eval.heldout.sequences=12", "eval.batch_size=4"]
    cluster = Cluster(slurm_conf, tmp_path)
    out = tmp_path / "array-evals"
    job = submit(cluster, EVAL, "evaluate", *args, f"out={out}", array="0-1")
    states = cluster.wait(job)
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{cluster.log_tails()}"
    logs = [cluster.log("evaluate", job, task) for task in (0, 1)]
    assert "part 0 of 2" in logs[0] and "part 1 of 2" in logs[1]
    assert all("3 checkpoints x 1 evaluations" in log for log in logs), cluster.log_tails()  # 6 split 3 + 3
    single = tmp_path / "single"
    result = run_cli("parc.evaluate", "progress=false", *args, f"out={single}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "results.csv").read_bytes() == (single / "results.csv").read_bytes()
