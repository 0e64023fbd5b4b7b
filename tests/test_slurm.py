"""The grid on a real Slurm cluster (scripts/slurm-cluster.sh): the real sbatch files, arrays, preemption, requeue,
srun + torchrun, and Hydra's submitit launcher (one of its tasks preempted too), all training the demo for real.

One module fixture submits everything at once so the 2-CPU node stays busy: the prepare array (2 parts),
two preemption victims, the 3 archs x 2 seeds array, and a 2-process torchrun task. As soon as the victims
are training, one gets SIGUSR1 (`scancel -b --signal=USR1`: the time-limit warning, after which the batch
script requeues the task itself) and the other `scontrol requeue` (SIGTERM: Slurm requeues). Each victim
has the same config as one array cell, whose final weights it must then equal exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parc.store.metricsfile import read_metrics

from conftest import REPO, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "scripts" / "slurm-cluster.sh"
TRAIN = REPO / "slurm" / "train_array.sbatch"
PREPARE = REPO / "slurm" / "prepare_array.sbatch"
CANNOT_INSTALL = 3  # scripts/slurm-cluster.sh: packages missing and apt could not install them
# A cluster without GPUs, 2 CPUs: one CPU per task so two run at once.
RESOURCES = ["--gres=none", "--cpus-per-task=1", "--mem=1500M", "--time=15"]
STEPS, EVERY = 12, 4
CANARIES = [
    "data.canaries.seed=5",
    "data.canaries.per_group=2",
    "data.canaries.repeats=[1,4]",
    "data.canaries.windows=[[2,12]]",
    "data.canaries.references=8",
]
WAIT_S = 900  # bound on every wait; a healthy run of the whole module takes a few minutes
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="session")
def slurm_conf():
    """SLURM_CONF of a running local cluster: the one CI started, or one started here (and stopped after)."""
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (scripts/slurm-cluster.sh starts daemons); CI runs as root")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and there is no apt-get to install it")
    was_up = subprocess.run([CLUSTER, "status"], capture_output=True).returncode == 0
    started = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=900)
    if started.returncode == CANNOT_INSTALL:
        pytest.skip(f"could not install Slurm: {started.stderr.strip().splitlines()[-1]}")
    assert started.returncode == 0, f"scripts/slurm-cluster.sh start failed:\n{started.stderr[-3000:]}"
    conf = re.search(r"export SLURM_CONF=(\S+)", started.stdout).group(1)
    yield conf
    if not was_up:
        subprocess.run([CLUSTER, "stop"], capture_output=True)


class Cluster:
    """Submit, watch and signal jobs as a user would, with the command-line tools."""

    def __init__(self, conf: str, work: Path):
        self.work, self.logs = work, work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        cache = work / "cache"
        self.env = dict(
            os.environ,
            SLURM_CONF=conf,
            PARC_PYTHON=sys.executable,
            PYTHONUNBUFFERED="1",
            HF_HOME=str(cache / "hf"),
            HF_DATASETS_CACHE=str(cache / "datasets"),
            WANDB_DIR=str(cache / "wandb"),
        )

    def run(self, *cmd, env=None, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            cmd, env={**self.env, **(env or {})}, cwd=self.work, capture_output=True, text=True, timeout=120
        )
        assert not check or result.returncode == 0, f"{cmd}: {result.stderr}"
        return result

    def states(self, job: str) -> dict:
        """Task -> state, from accounting (pending array placeholders such as 7_[2-5] included)."""
        out = self.run("sacct", "-X", "-n", "-P", "-j", job, "-o", "JobID,State", check=False).stdout
        return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line}

    def wait(self, *jobs: str) -> dict:
        """Block until every task of the jobs has ended; returns task -> state."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            states = {task: state for job in jobs for task, state in self.states(job).items()}
            if states and all(state in TERMINAL for state in states.values()):
                return states
            time.sleep(1)
        queue = self.run("squeue", check=False).stdout
        pytest.fail(f"jobs {jobs} still not finished after {WAIT_S}s: {states}\n{queue}\n{self.log_tails()}")

    def log(self, name: str, job: str, task: int = 0) -> str:
        return (self.logs / f"{name}-{job}_{task}.log").read_text()

    def log_tails(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log")))


def submit(cluster: Cluster, script: Path, name: str, *overrides, options=(), array: str = "0", env=None) -> str:
    """sbatch [our options] SCRIPT [Hydra overrides]; command-line options override the script's #SBATCH lines."""
    out = cluster.run(
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--array={array}",
        f"--output={cluster.logs}/%x-%A_%a.log",
        *RESOURCES,
        *options,
        str(script),
        *overrides,
        env=env,
    )
    return out.stdout.strip().split(";")[0]


def wait_for_training(cell: Path, ended, what: str, cluster: Cluster) -> None:
    """Until the run has logged its first update (mid-run, checkpoint-0 written); `ended()` says it is too late."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if (cell / "metrics.jsonl").exists() and (cell / "metrics.jsonl").read_text().strip():
            return
        if ended():
            pytest.fail(f"{what} ended before training started\n{cluster.log_tails()}")
        time.sleep(0.2)
    pytest.fail(f"{what} did not start training within {WAIT_S}s\n{cluster.log_tails()}")


def job_ended(cluster: Cluster, job: str):
    def ended() -> bool:
        states = cluster.states(job)
        return bool(states) and all(state in TERMINAL for state in states.values())

    return ended


@pytest.fixture(scope="module")
def grid(slurm_conf, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    cluster = Cluster(slurm_conf, work)
    root = work / "parc"
    common = [
        "experiment=demo",
        f"paths.root={root}",
        f"trainer.max_steps={STEPS}",
        f"checkpoint.every={EVERY}",
        "trainer.progress=false",
        *CANARIES,  # every job plants the same canaries: requeue and DDP must stay bit-exact with them
    ]
    jobs = {}
    try:
        jobs["prepare"] = submit(cluster, PREPARE, "prepare", "experiment=demo", f"paths.root={root}", array="0-1")
        after = [f"--dependency=afterok:{jobs['prepare']}"]
        # Victims first, so they start as soon as the data is ready and are watched from their first step.
        for name, arch, seed in (("usr1", "mamba", 0), ("term", "rwkv", 1)):
            jobs[name] = submit(
                cluster,
                TRAIN,
                name,
                *common,
                f"run_name={name}",
                options=after,
                env={"ARCHS": arch, "SEEDS": str(seed)},
            )
        jobs["grid"] = submit(
            cluster,
            TRAIN,
            "grid",
            *common,
            "run_name=grid",
            options=after,
            array="0-5",
            env={"ARCHS": "pythia mamba rwkv", "SEEDS": "0 1"},
        )
        jobs["ddp"] = submit(
            cluster,
            TRAIN,
            "ddp",
            *common,
            "run_name=ddp",
            options=[*after, "--cpus-per-task=2"],
            env={"ARCHS": "pythia", "SEEDS": "0", "NPROC_PER_NODE": "2", "ACCELERATE_USE_CPU": "1"},
        )

        runs = root / "runs"
        wait_for_training(runs / "usr1" / "mamba-seed0-shard0", job_ended(cluster, jobs["usr1"]), "usr1", cluster)
        cluster.run("scancel", "--batch", "--signal=USR1", f"{jobs['usr1']}_0")
        wait_for_training(runs / "term" / "rwkv-seed1-shard0", job_ended(cluster, jobs["term"]), "term", cluster)
        cluster.run("scontrol", "requeue", f"{jobs['term']}_0")
        yield cluster, root, jobs
    finally:  # after a failure, nothing keeps running or queued
        if jobs:
            cluster.run("scancel", *jobs.values(), check=False)


def cell_dir(root: Path, run_name: str, arch: str, seed: int) -> Path:
    return root / "runs" / run_name / f"{arch}-seed{seed}-shard0"


def final_weights(cell: Path) -> dict:
    return load_file(cell / f"checkpoint-{STEPS}" / "model.safetensors")


def assert_identical_runs(run: Path, reference: Path) -> None:
    got, want = read_metrics(run / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [(r["step"], r["loss"], r["batch_hash"]) for r in got] == [
        (r["step"], r["loss"], r["batch_hash"]) for r in want
    ]
    a, b = final_weights(run), final_weights(reference)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_prepare_array_builds_the_data_in_parts(grid):
    cluster, root, jobs = grid
    assert set(cluster.wait(jobs["prepare"]).values()) == {"COMPLETED"}
    data = root / "data" / "demo-parc-128"
    assert (data / "manifest.json").exists()
    assert sorted(p.name for p in (data / "parts").iterdir()) == ["part-0-of-2", "part-1-of-2"]
    for task in (0, 1):
        assert f"part {task} of 2" in cluster.log("prepare", jobs["prepare"], task)


def test_array_trains_every_cell_of_the_grid(grid):
    from transformers import AutoModelForCausalLM

    cluster, root, jobs = grid
    states = cluster.wait(jobs["grid"])
    assert states == {f"{jobs['grid']}_{task}": "COMPLETED" for task in range(6)}, cluster.log_tails()
    cells = [(arch, seed) for arch in ("pythia", "mamba", "rwkv") for seed in (0, 1)]
    for task, (arch, seed) in enumerate(cells):  # task i -> ARCHS[i // 2], SEEDS[i % 2]; one log per task
        assert f"arch={arch} seed={seed}" in cluster.log("grid", jobs["grid"], task)
        cell = cell_dir(root, "grid", arch, seed)
        assert [r["step"] for r in read_metrics(cell / "metrics.jsonl")] == list(range(1, STEPS + 1))
        assert len(json.loads((cell / "canaries.json").read_text())["manifest"]) == 2 * (1 + 4)
        model = AutoModelForCausalLM.from_pretrained(cell / f"checkpoint-{STEPS}")
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    pythia = [final_weights(cell_dir(root, "grid", "pythia", seed)) for seed in (0, 1)]
    assert not torch.equal(*(w["gpt_neox.embed_in.weight"] for w in pythia))  # the seeds made a difference

    report = run_cli("parc.grid", "status", f"paths.root={root}", "run_name=grid", "seeds=0-1", "json=true")
    assert report.returncode == 0, report.stderr
    status = json.loads(report.stdout)
    assert status["summary"]["done"] == 6
    assert all(c["checkpoints"] == list(range(0, STEPS + 1, EVERY)) for c in status["cells"])


@pytest.mark.parametrize(
    "victim, arch, seed, signal_seen, saved_by",
    [
        ("usr1", "mamba", 0, "received SIGUSR1", "requeueing job"),  # the batch script requeues
        ("term", "rwkv", 1, "received SIGTERM", "DUE TO JOB REQUEUE"),  # Slurm requeues
    ],
)
def test_preempted_task_checkpoints_requeues_and_ends_identical(grid, victim, arch, seed, signal_seen, saved_by):
    cluster, root, jobs = grid
    assert set(cluster.wait(jobs[victim]).values()) == {"COMPLETED"}, cluster.log_tails()
    log = cluster.log(victim, jobs[victim])
    assert signal_seen in log and saved_by in log, log
    assert "training exited with 75" in log, log
    saved = re.search(r"saved checkpoint-(\d+); exiting for requeue", log)
    assert saved, log
    assert "SLURM_RESTART_COUNT=1" in log and "resuming from" in log, log
    assert int(saved.group(1)) < STEPS
    cluster.wait(jobs["grid"])
    assert_identical_runs(cell_dir(root, victim, arch, seed), cell_dir(root, "grid", arch, seed))


def test_srun_torchrun_two_processes_match_one(grid):
    cluster, root, jobs = grid
    assert set(cluster.wait(jobs["ddp"], jobs["grid"]).values()) == {"COMPLETED"}, cluster.log_tails()
    log = cluster.log("ddp", jobs["ddp"])
    assert "1 node(s) x 2 processes" in log and re.search(r"world size\s+2\b", log), log
    two = read_metrics(cell_dir(root, "ddp", "pythia", 0) / "metrics.jsonl")
    one = read_metrics(cell_dir(root, "grid", "pythia", 0) / "metrics.jsonl")
    assert [r["batch_hash"] for r in two] == [r["batch_hash"] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-6, rel=0)


def test_hydra_submitit_launcher_runs_the_sweep_and_requeues_a_preempted_task(grid):
    """`-m hydra/launcher=slurm`: one array; SIGUSR2 (submitit's time-limit signal) makes submitit requeue."""
    cluster, root, jobs = grid
    cluster.wait(jobs["grid"])  # the reference cells; also frees the node for the sweep
    name = "parc-hydra-test"
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parc.train",
            "-m",
            "hydra/launcher=slurm",
            "experiment=demo",
            "arch=mamba",
            "seed=0,1",
            f"paths.root={root}",
            "run_name=hydra",
            f"trainer.max_steps={STEPS}",
            f"checkpoint.every={EVERY}",
            "trainer.progress=false",
            f"hydra.launcher.name={name}",
            "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=15",
            *CANARIES,
        ],
        env=cluster.env,
        cwd=cluster.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_training(cell_dir(root, "hydra", "mamba", 0), lambda: sweep.poll() is not None, "the sweep", cluster)
        array = cluster.run("squeue", "-h", "-n", name, "-o", "%F").stdout.split()[0]
        cluster.run("scancel", "--signal=USR2", f"{array}_0")  # job steps only: submitit's process
        output, _ = sweep.communicate(timeout=WAIT_S)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            cluster.run("scancel", "--name", name, check=False)
    assert sweep.returncode == 0, output[-5000:]
    log = next((root / "runs" / "multirun" / "hydra" / ".submitit").glob(f"{array}_0/*_log.out")).read_text()
    assert "Requeued job" in log and "resuming from" in log, log[-5000:]
    for seed in (0, 1):
        assert_identical_runs(cell_dir(root, "hydra", "mamba", seed), cell_dir(root, "grid", "mamba", seed))
