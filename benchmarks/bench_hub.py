"""Step time of the demo with Hub pushes vs without (target: at most 2 % slower with pushes).

Runs `python -m parc.train experiment=demo` alternately without and with `hub.repo_id`, against the
Hub-compatible server of tests/hub_server.py (the public Hub is unreachable here), and compares the
`step_seconds` the trainer records per step (checkpoint writing itself is outside it: it happens with or
without pushes). Where the machine has two or more cores the trainer gets one (with one torch thread) and
the server another, so that what is measured is what the uploader thread costs the trainer's process.
On a shared machine the neighbours' load moves wall times by more than 2 %, so the benchmark also reports
the CPU seconds the uploader adds per revision, and that extra CPU against the training steps' time: an
upper bound of the slowdown, reached only if the uploader had to share the trainer's only core.
Prints one JSON line: the median step time each way, their ratio, the CPU figures, and the setup.

P-hub (`--limit 5/20`): the server refuses more than 5 commits per 20 s (429 + Retry-After, as the Hub's
128 per hour, scaled down) and the run publishes under `hub.max_commits_per_hour=--budget`, waiting at the
end until everything is published. Adds: training wall time (first to last step, from metrics.jsonl) with
pushes / without, and the seconds from the end of training until the last revision is on the Hub.

    .venv/bin/python benchmarks/bench_hub.py [--steps 120] [--every 10] [--repeats 3] [--arch pythia]
    .venv/bin/python benchmarks/bench_hub.py --limit 5/20 --budget 800 --steps 60 --every 5 --repeats 2

`--smoke`: one 6-step run each way, no core pinning (checks the benchmark runs).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.REPO / "tests"))

from parc.store.metricsfile import METRICS_FILE, read_metrics

from hub_server import CommitLimit, HubServer  # noqa: E402


def train_once(root: Path, out: Path, args, data: list, hub: HubServer | None, cpu: int | None) -> tuple:
    """Step seconds of one training run (after warm-up), and the CPU seconds the whole process used."""
    overrides = [
        "experiment=demo",
        f"arch={args.arch}",
        f"paths.root={root}",
        f"output_dir={out}",
        *data,
        f"trainer.max_steps={args.steps}",
        f"checkpoint.every={args.every}",
        "checkpoint.keep_train_states=2",
        "trainer.progress=false",
        "resume=none",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(root / "hf")}
    if hub is not None:
        overrides += [
            f"hub.repo_id=bench/{out.name}",
            f"hub.max_commits_per_hour={args.budget}",
            "hub.wait_at_end=36000",
            "hub.retry_timeout_s=36000",
        ]
        env.update(hub.env())
    command = [sys.executable, "-m", "parc.train", *overrides]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"training failed:\n{done.stderr[-3000:]}")
    rows = read_metrics(out / METRICS_FILE)
    cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # the first steps warm up allocators and caches
    return [row["step_seconds"] for row in rows[5:]], cpu_seconds, rows[-1]["time"] - rows[0]["time"], rows[-1]["time"]


def last_commit_wall_time(hub: HubServer, repo_id: str) -> float:
    """When the server accepted the repo's last commit, as time.time() (it records monotonic times)."""
    offset = time.time() - time.monotonic()
    last = max(
        t
        for t, method, path, status in hub.state.requests
        if method == "POST" and f"/{repo_id}/commit/" in path and status == 200
    )
    return last + offset


def add_options(parser) -> None:
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="pythia")
    parser.add_argument("--documents", type=int, default=10, help="demo plays to prepare (16 x steps sequences)")
    parser.add_argument("--limit", default=None, help="COMMITS/SECONDS: the server's commit limit, e.g. 5/20")
    parser.add_argument("--budget", type=float, default=100.0, help="hub.max_commits_per_hour of the runs")


def run(args) -> list:
    data = [f"data.max_documents={args.documents}"]
    if args.smoke:  # no commit spacing to wait for; the demo stream the other benchmarks prepared
        args.steps, args.every, args.repeats, args.budget = 6, 3, 1, 1e6
        data = [f"data.dir={common.demo_root(args.work) / 'data' / 'demo-parc-128'}", "data.auto_prepare=false"]
    cores = sorted(os.sched_getaffinity(0))
    trainer_cpu = cores[0] if len(cores) > 1 and not args.smoke else None
    if trainer_cpu is not None:
        os.sched_setaffinity(0, cores[1:])  # the server (this process) stays off the trainer's core
    hub = HubServer().start()
    if args.limit:
        commits, window = args.limit.split("/")
        hub.state.commit_limit = CommitLimit(int(commits), float(window))
    walls = {"without": [], "with": []}  # training wall time, first to last step
    lags = []  # end of training -> last revision published
    times = {"without": [], "with": []}
    run_medians = {"without": [], "with": []}  # one per run: how much the machine's load moved things
    cpu = {"without": [], "with": []}
    pushes = 0
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-hub-", dir=args.work) as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            for mode in ("without", "with"):
                out = root / f"{mode}-{repeat}"
                seconds, cpu_seconds, wall, ended = train_once(
                    root, out, args, data, hub if mode == "with" else None, trainer_cpu
                )
                walls[mode].append(round(wall, 2))
                if mode == "with":
                    lags.append(round(last_commit_wall_time(hub, f"bench/{out.name}") - ended, 1))
                times[mode] += seconds
                cpu[mode].append(cpu_seconds)
                run_medians[mode].append(round(statistics.median(seconds), 5))
                if mode == "with":
                    pushes += sum(1 for name in hub.state.repos[f"bench/{out.name}"].branches if name != "main")
    hub.stop()
    without, with_pushes = statistics.median(times["without"]), statistics.median(times["with"])
    # CPU seconds do not stretch with the machine's load as wall time does: the uploader's extra CPU, against the
    # CPU of the training steps it could at worst take a core from, bounds the overhead from above.
    extra_cpu = statistics.median(cpu["with"]) - statistics.median(cpu["without"])
    step_cpu = min(run_medians["without"]) * args.steps  # the least loaded run: closest to the steps' own CPU
    return [
        common.emit(
            {
                "bench": "P-hub",
                "unit": "s/step",
                "arch": args.arch,
                "steps": args.steps,
                "checkpoint_every": args.every,
                "repeats": args.repeats,
                "revisions_pushed": pushes,
                "median_step_s_without": round(without, 5),
                "median_step_s_with": round(with_pushes, 5),
                "ratio": round(with_pushes / without, 4),
                "run_medians_without": run_medians["without"],
                "run_medians_with": run_medians["with"],
                "upload_cpu_s_per_revision": round(extra_cpu / (pushes / args.repeats), 4),
                "upload_cpu_vs_step_time": round(extra_cpu / step_cpu, 4),
                "commit_limit": args.limit,
                "max_commits_per_hour": args.budget,
                "train_wall_s_without": walls["without"],
                "train_wall_s_with": walls["with"],
                "train_wall_ratio": round(statistics.median(walls["with"]) / statistics.median(walls["without"]), 4),
                "publish_lag_s": lags,
                "refused_429": sum(1 for *_, status in hub.state.requests if status == 429),
                "load_average": os.getloadavg()[0],
                "trainer_cpu": trainer_cpu,
                "wall_s": round(time.monotonic() - started, 1),
            }
        )
    ]


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0], add_options)
