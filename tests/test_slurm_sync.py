"""PARC_CHAIN_SYNC=1 on the real local Slurm cluster: a training array publishing to a commit-limited local Hub
leaves revisions pending (hub.wait_at_end=0), its task 0 queues slurm/sync.sbatch after the array, and that CPU
job publishes every revision, one commit each, byte-identical to the local checkpoints."""

from __future__ import annotations

import pytest
from test_hub import journal, local_files, without_card
from test_slurm import Cluster, slurm_conf, submit  # noqa: F401  (slurm_conf is the session fixture)

from conftest import REPO, short_run
from hub_server import CommitLimit, hub_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(1200)]

TRAIN = REPO / "slurm" / "train_array.sbatch"
SYNC = REPO / "slurm" / "sync.sbatch"
REPO_ID = "org/chained"


def test_chained_sync_job_publishes_what_training_left(slurm_conf, hub_server, demo_root, tmp_path):
    # One commit per 8 s: the run's 4 revisions + main are made within a second or two of each other, so
    # training ends with most of them queued; the sync job waits out the 429s (Retry-After <= 8 s).
    hub_server.state.commit_limit = CommitLimit(commits=1, window_s=8.0)
    cluster = Cluster(slurm_conf, tmp_path)
    runs = tmp_path / "runs"
    out = runs / "chain" / "pythia-seed0-shard0"
    overrides = [a for a in short_run(demo_root, out, steps=12, every=4) if not a.startswith("output_dir=")]
    env = {
        **hub_server.env(),
        "ARCHS": "pythia",
        "SEEDS": "0",
        "PARC_CHAIN_SYNC": "1",
        "RUN_ROOT": str(runs),
        "PARC_SYNC_SCRIPT": str(SYNC),
        "PARC_PYTHON": cluster.env["PARC_PYTHON"],
    }
    job = submit(
        cluster,
        TRAIN,
        "chain",
        *overrides,
        f"paths.output_root={runs}",
        "run_name=chain",
        f"hub.repo_id={REPO_ID}",
        "hub.wait_at_end=0",
        "hub.max_commits_per_hour=3600000",
        "hub.retry_initial_s=0.05",
        "checkpoint.keep_train_states=null",
        env=env,
    )
    states = cluster.wait(job)
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{cluster.log_tails()}"
    train_log = cluster.log("chain", job)
    queued = [line for line in train_log.splitlines() if "queued" in line and "as job" in line]
    assert queued, train_log[-3000:]
    sync_job = queued[0].split("as job ")[1].split()[0]
    sync_states = cluster.wait(sync_job)
    sync_log = (tmp_path / f"parc-sync-{sync_job}.log").read_text()
    assert set(sync_states.values()) == {"COMPLETED"}, sync_log[-3000:]
    assert f"parc-sync: {out}: started" in sync_log

    assert set(journal(out).values()) == {"pushed"}
    repo = hub_server.state.repos[REPO_ID]
    steps = [0, 4, 8, 12]
    assert set(repo.branches) == {"main"} | {f"checkpoint-{s}" for s in steps}
    for branch, step in [*((f"checkpoint-{s}", s) for s in steps), ("main", 12)]:
        files = dict(hub_server.state.files(REPO_ID, branch))
        files.pop(".gitattributes", None)
        assert without_card(files, branch) == local_files(out / f"checkpoint-{step}"), branch
        assert hub_server.state.branch_commits(REPO_ID, branch) == [f"{branch}: weights and training state"]
    # What the chain is for: training itself did not publish everything.
    assert "revisions not published yet" in train_log, train_log[-3000:]
