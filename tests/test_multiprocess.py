"""Real multi-process data parallelism on CPU (gloo): `torchrun` and `accelerate launch` start 2 processes that
train exactly what 1 process trains with twice the accumulation, and their checkpoint resumes on 1 process.

`accelerate launch --cpu` silently runs one process (see shared/notes/stack.md), so the tests use
`--multi_gpu` with ACCELERATE_USE_CPU=1 and assert the world size the run printed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from parc.store.metricsfile import read_metrics

from conftest import short_run, train

STEPS, EVERY = 8, 4  # as the session's demo grid (conftest.eval_grid), whose pythia seed 0 is the reference


def launch(launcher: list, overrides: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a launcher; on a hang, kill it and every descendant. torch elastic starts each rank in a session of
    its own, so killing the launcher's process group would leave the ranks alive, holding the output pipes."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [*launcher, "-m", "parc.train", *overrides],
            env=env,
            cwd=cwd,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            if proc.returncode is None:  # still running: a hang, or pytest-timeout interrupted the wait
                kill_tree(proc.pid)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if returncode is None:
        pytest.fail(f"{launcher[0]} did not finish in {timeout}s\n{stdout[-3000:]}\n{stderr[-3000:]}")
    assert returncode == 0, f"exit {returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    return subprocess.CompletedProcess(proc.args, returncode, stdout, stderr)


def kill_tree(pid: int) -> None:
    """SIGABRT the launcher's descendants first (PYTHONFAULTHANDLER makes each print where it hung into the
    captured stderr), then SIGKILL them all."""
    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for signum, processes in ((signal.SIGABRT, family[:-1]), (signal.SIGKILL, family)):
        for process in processes:
            try:
                process.send_signal(signum)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=5 if signum == signal.SIGABRT else 30)


BIN = Path(sys.executable).parent  # the launchers installed beside this interpreter, as a user runs them
TORCHRUN = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
ACCELERATE = [
    str(BIN / "accelerate"),
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


@pytest.fixture(scope="module")
def one_process(eval_grid):
    """The reference: 1 process, micro-batch 8, accumulation 2 (global batch 16): the session grid's pythia
    seed 0 (trained once, shared by every test that needs a finished demo run)."""
    reference = eval_grid / "pythia-seed0-shard0"
    assert not list((reference / f"checkpoint-{STEPS}" / "training_state").glob("rng-rank1.pt"))  # one rank
    return reference


def assert_same_training(run: Path, reference: Path, first_step: int = 1) -> None:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] >= first_step]
    expected = [r for r in read_metrics(reference / "metrics.jsonl") if r["step"] >= first_step]
    assert [r["step"] for r in rows] == [r["step"] for r in expected] == list(range(first_step, STEPS + 1))
    assert [r["batch_hash"] for r in rows] == [r["batch_hash"] for r in expected]
    for got, want in zip(rows, expected):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6, rel=0), got["step"]
        assert got["tokens"] == want["tokens"]


def launch_two(launcher: list, demo_root: Path, out: Path) -> None:
    result = launch(launcher, short_run(demo_root, out, steps=STEPS, every=EVERY), out.parent)
    printed = result.stdout + result.stderr
    assert re.search(r"world size\s+2\b", printed), printed[-2000:]
    assert "8 micro-batch x 1 accumulation x 2 processes" in printed


@pytest.fixture(scope="module")
def torchrun_two(demo_root, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("torchrun") / "run"
    launch_two(TORCHRUN, demo_root, out)
    return out


def test_torchrun_two_processes_train_what_one_process_trains(torchrun_two, one_process):
    assert_same_training(torchrun_two, one_process)
    state = torchrun_two / f"checkpoint-{STEPS}" / "training_state"
    assert sorted(p.name for p in state.glob("rng-rank*.pt")) == ["rng-rank0.pt", "rng-rank1.pt"]


@pytest.mark.slow
def test_accelerate_launch_two_processes_train_what_one_process_trains(demo_root, one_process, tmp_path):  # noqa: F811
    launch_two(ACCELERATE, demo_root, tmp_path / "run")
    assert_same_training(tmp_path / "run", one_process)


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process(demo_root, torchrun_two, one_process, tmp_path):  # noqa: F811
    resumed = tmp_path / "resumed"
    start = torchrun_two / f"checkpoint-{EVERY}"
    result = train(*short_run(demo_root, resumed, f"resume={start}", steps=STEPS, every=EVERY))
    assert re.search(r"world size\s+1\b", result.stdout)
    assert f"resuming from {start}" in result.stdout
    assert_same_training(resumed, one_process, first_step=EVERY + 1)
