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

    .venv/bin/python benchmarks/bench_hub.py [--steps 120] [--every 10] [--repeats 3] [--arch pythia]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hub_server import HubServer  # noqa: E402


def run(root: Path, out: Path, args, hub: HubServer | None, cpu: int | None) -> tuple:
    """Step seconds of one training run (after warm-up), and the CPU seconds the whole process used."""
    overrides = ["experiment=demo", f"arch={args.arch}", f"paths.root={root}", f"output_dir={out}",
                 f"data.max_documents={args.documents}", f"trainer.max_steps={args.steps}", f"checkpoint.every={args.every}",
                 "checkpoint.keep_train_states=2", "trainer.progress=false", "resume=none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(root / "hf")}
    if hub is not None:
        overrides.append(f"hub.repo_id=bench/{out.name}")
        env.update(hub.env())
    command = [sys.executable, "-m", "parc.train", *overrides]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return [row["step_seconds"] for row in rows[5:]], cpu_seconds  # the first steps warm up allocators and caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="pythia")
    parser.add_argument("--documents", type=int, default=10, help="demo plays to prepare (16 x steps sequences)")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    trainer_cpu = cores[0] if len(cores) > 1 else None
    if len(cores) > 1:
        os.sched_setaffinity(0, cores[1:])  # the server (this process) stays off the trainer's core
    hub = HubServer().start()
    times = {"without": [], "with": []}
    run_medians = {"without": [], "with": []}  # one per run: how much the machine's load moved things
    cpu = {"without": [], "with": []}
    pushes = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            for mode in ("without", "with"):
                out = root / f"{mode}-{repeat}"
                seconds, cpu_seconds = run(root, out, args, hub if mode == "with" else None, trainer_cpu)
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
    print(json.dumps({
        "benchmark": "hub_push_overhead", "arch": args.arch, "steps": args.steps, "checkpoint_every": args.every,
        "repeats": args.repeats, "revisions_pushed": pushes, "median_step_s_without": round(without, 5),
        "median_step_s_with": round(with_pushes, 5), "ratio": round(with_pushes / without, 4),
        "run_medians_without": run_medians["without"], "run_medians_with": run_medians["with"],
        "upload_cpu_s_per_revision": round(extra_cpu / (pushes / args.repeats), 4),
        "upload_cpu_vs_step_time": round(extra_cpu / step_cpu, 4),
        "load_average": os.getloadavg()[0], "trainer_cpu": trainer_cpu, "wall_s": round(time.monotonic() - started, 1),
    }))


if __name__ == "__main__":
    main()
