"""The Hub's commit limit: a run whose schedule outpaces a limited local Hub trains on unblocked, exits 0
leaving the rest to parc.sync; a kill -9 while pushes wait loses nothing; parc.sync publishes every revision
with one commit, byte-identical; hub.max_commits_per_hour keeps a run under the limit; the dry run's
estimate against a direct count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_hub import PUBLISH, client, copy_run, journal, local_files, template, without_card  # noqa: F401

from parc.store.metricsfile import read_metrics

from conftest import run_cli, short_run
from hub_server import CommitLimit, hub_server  # noqa: F401  (the fixture)

LIMITED_REPO = "org/limited"


def files_of(hub, repo_id, branch):
    files = dict(hub.state.files(repo_id, branch))
    files.pop(".gitattributes", None)
    return files


def rows(path) -> int:
    return len(read_metrics(path)) if path.exists() else 0  # a row being written is not counted


def refused(hub) -> list:
    return [t for t, method, path, status in hub.state.requests if status == 429 and "/commit/" in path]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_training_outpaces_the_limit_unblocked_and_sync_finishes_across_kill_9(hub_server, demo_root, tmp_path):
    # 2 commits an hour (creating the repo is one): refused from checkpoint-4 on, long before step 20, however
    # slow the machine; the 429s say to retry in about an hour.
    hub_server.state.commit_limit = CommitLimit(commits=2, window_s=3600.0)
    out = tmp_path / "run"
    args = [
        *short_run(demo_root, out, steps=20, every=4),
        f"hub.repo_id={LIMITED_REPO}",
        "hub.wait_at_end=0",
        "hub.max_commits_per_hour=3600000",
        "hub.retry_initial_s=0.05",
        "trainer.log_every=1",
        "checkpoint.keep_train_states=null",
    ]  # every local checkpoint stays whole: compared byte for byte
    env = {**os.environ, **hub_server.env()}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "parc.train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    logged_at_first_refusal = None
    deadline = time.monotonic() + 600  # generous: a loaded 2-core machine trains these 20 tiny steps in minutes
    while trainer.poll() is None and time.monotonic() < deadline:
        if logged_at_first_refusal is None and refused(hub_server):
            logged_at_first_refusal = rows(out / "metrics.jsonl")
        time.sleep(0.05)
    stdout, stderr = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, stderr[-3000:]
    # Pushes waited on 429s while training went on: steps kept being logged after the first refusal.
    assert logged_at_first_refusal is not None and logged_at_first_refusal < 20 == rows(out / "metrics.jsonl")
    assert "the Hub's commit limit (HTTP 429); waiting" in stderr
    left = [revision for revision, state in journal(out).items() if state == "pending"]
    assert left, "the limit should leave revisions for parc.sync"
    assert f"hub: {len(left)} revisions not published yet" in stderr and f"python -m parc.sync {out}" in stderr

    # parc.sync, killed -9 while its pushes wait out a 429: nothing lost, the journal still holds the rest.
    hub_server.state.commit_limit.times[LIMITED_REPO] = [time.monotonic()] * 2  # the window is full again
    before = len(refused(hub_server))
    syncer = subprocess.Popen(
        [sys.executable, "-m", "parc.sync", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while len(refused(hub_server)) == before:
        assert syncer.poll() is None and time.monotonic() < deadline + 120, syncer.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(syncer.pid, signal.SIGKILL)
    syncer.communicate()
    still = [revision for revision, state in journal(out).items() if state == "pending"]
    assert still and set(still) <= set(left)

    hub_server.state.commit_limit = CommitLimit(commits=100, window_s=1.0)  # the hour has passed
    synced = run_cli("parc.sync", str(out), env=hub_server.env(), timeout=280)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert set(journal(out).values()) == {"pushed"}
    repo = hub_server.state.repos[LIMITED_REPO]
    steps = list(range(0, 21, 4))
    assert set(repo.branches) == {"main"} | {f"checkpoint-{s}" for s in steps}
    for branch, step in [*((f"checkpoint-{s}", s) for s in steps), ("main", 20)]:
        published = without_card(files_of(hub_server, LIMITED_REPO, branch), branch)
        assert published == local_files(out / f"checkpoint-{step}"), branch
        assert hub_server.state.branch_commits(LIMITED_REPO, branch) == [f"{branch}: weights and training state"]


def test_the_commit_budget_spaces_commits_under_the_limit(hub_server, template, tmp_path):
    hub_server.state.commit_limit = CommitLimit(commits=3, window_s=3.0)
    out = copy_run(template, tmp_path)
    # 2400 per hour = one commit every 1.5 s: with the repo's creation at most 3 in 3 s, so the Hub never has to
    # refuse one (without the budget the 5 commits come within a second or two).
    result = client(hub_server, PUBLISH, tmp_path, out, "hub.max_commits_per_hour=2400", steps=[0, 5, 9, 10], final=10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert refused(hub_server) == [] and hub_server.count("POST", r"/commit/") == 5
    assert set(journal(out).values()) == {"pushed"}


def test_rate_limit_headers_say_how_long_to_wait():
    from parc.hub.pacing import rate_limit_wait

    class Response:
        def __init__(self, headers):
            self.status_code, self.headers = 429, headers

    class Refused(Exception):
        def __init__(self, headers):
            super().__init__("429")
            self.response = Response(headers)

    assert rate_limit_wait(Refused({"Retry-After": "2580"})) == 2580  # "retry this action in 43 minutes"
    assert (
        rate_limit_wait(
            Refused({"RateLimit": '"commits";r=0;t=1234', "RateLimit-Policy": '"fixed window";"commits";q=128;w=3600'})
        )
        == 1234
    )
    assert rate_limit_wait(Refused({"RateLimit": '"api";r=5;t=99'})) == 0  # not exhausted: no reason to wait
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = Refused({"Retry-After": "7"})
    assert rate_limit_wait(wrapped) == 7 and rate_limit_wait(ValueError("x")) == 0


def reference_peak(times):
    return max((sum(1 for u in times if t <= u < t + 3600) for t in times), default=0)


@pytest.mark.parametrize("schedule", ["parc", "pythia"])
def test_the_dry_run_estimate_matches_a_direct_count(schedule):
    from parc.config import compose
    from parc.hub.pacing import commit_estimate
    from parc.store.steps import checkpoint_steps

    cfg = compose(["experiment=demo", f"checkpoint={schedule}", "trainer.max_steps=4000"])
    steps = checkpoint_steps(cfg.checkpoint, 4000)
    estimate = commit_estimate(steps, step_time_s=3.0, max_per_hour=100)
    times = [s * 3.0 for s in steps] + [steps[-1] * 3.0]
    assert estimate["commits"] == len(steps) + 1 and estimate["peak_per_hour"] == reference_peak(times)
    published = None  # commits in order, 36 s apart at the earliest
    for ready in sorted(times):
        published = ready if published is None else max(ready, published + 36.0)
    assert estimate["lag_s"] == pytest.approx(published - times[-1])


@pytest.mark.slow
def test_dry_run_warns_when_the_schedule_exceeds_the_budget(demo_root, tmp_path):
    base = [
        "experiment=demo",
        f"paths.root={demo_root}",
        f"output_dir={tmp_path / 'dry'}",
        "dry_run=true",
        "hub.repo_id=org/x",
        "trainer.max_steps=40000",
        "checkpoint.every=10",
    ]
    fast = run_cli("parc.train", *base, "hub.step_time_s=0.5")  # 720 revisions an hour
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert "4002 commits, 721 at peak per hour" in fast.stdout  # 720 revisions in an hour, + main with the last
    assert "exceeds hub.max_commits_per_hour=100" in fast.stdout
    slow = run_cli("parc.train", *base, "hub.step_time_s=60")  # 6 an hour
    assert slow.returncode == 0 and "exceeds" not in slow.stdout and "within hub.max_commits_per_hour" in slow.stdout
    assert not (tmp_path / "dry").exists()


# As PUBLISH, but close() comes once the first revision is pushed: the uploader is then waiting on the pacer.
PUBLISH_WHILE_PACED = PUBLISH.replace(
    "publisher.close(",
    """import time
while len(publisher.pending_steps()) == len(args["steps"]):
    time.sleep(0.01)
publisher.close(""",
)


def test_wait_at_end_ending_while_the_pacer_spaces_commits_leaves_them_pending_and_exits_clean(
    hub_server, template, tmp_path
):
    # One commit every 1.5 s and no wait at the end: close() stops the uploader while the pacer spaces the
    # commits. That is the expected end of such a run (not a failure): the rest stays pending for parc.sync.
    out = copy_run(template, tmp_path)
    result = client(
        hub_server,
        PUBLISH_WHILE_PACED,
        tmp_path,
        out,
        "hub.max_commits_per_hour=2400",
        "hub.wait_at_end=0",
        steps=[0, 5, 9, 10],
        final=10,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PushInterrupted" not in result.stderr and "error" not in result.stderr.lower()
    left = sorted(revision for revision, state in journal(out).items() if state == "pending")
    assert left and "pending after close: " in result.stdout
    synced = run_cli("parc.sync", str(out), env=hub_server.env(), timeout=240)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert set(journal(out).values()) == {"pushed"}
    repo_id = "org/parc-pythia-seed0-shard0"
    for step in (0, 5, 9, 10):
        branch = f"checkpoint-{step}"
        assert files_of(hub_server, repo_id, branch) == local_files(out / branch), branch
        assert len(hub_server.state.branch_commits(repo_id, branch)) == 1, branch


def test_the_retry_policy_lets_an_interrupted_wait_through():
    from parc.hub.pacing import PushInterrupted
    from parc.hub.repo import RetryPolicy

    def interrupted():
        raise PushInterrupted()

    with pytest.raises(PushInterrupted):
        RetryPolicy().call_until(None, "commit checkpoint-4", "org/name", interrupted)
