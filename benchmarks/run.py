"""`python benchmarks/run.py [--quick] [--only B1,B3] [--out results.jsonl]`: every benchmark, side by side.

Prints one JSON line per measurement (and, before each benchmark, a `{"bench": "machine", ...}` line), then
a summary line. `--quick` runs the small sizes (minutes on 2 cores); without it, the sizes quoted in
BENCHMARKS.md. Timings are not tests: nothing here asserts a speed.

`--smoke` runs every `benchmarks/bench_*.py` (found by name, so a new one is included) at one tiny size, in
this process, each followed by `{"bench": "done", "module": ..., "records": N}`: seconds per benchmark, no
numbers to quote; tests/test_benchmarks.py runs it so that an import or signature change fails CI.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import bench_evaluate
import bench_gpu
import bench_memorization
import bench_memory
import bench_prepare
import bench_resume
import bench_surprisal
import bench_throughput

import common

BENCHMARKS = {
    "B1": bench_throughput,
    "B2": bench_resume,
    "B3": bench_prepare,
    "B4": bench_memory,
    "GPU": bench_gpu,
    "E1": bench_evaluate,
    "E2": bench_memorization,
    "S1": bench_surprisal,
}


def every_benchmark() -> list:
    """Every benchmarks/bench_*.py module, by file name."""
    return sorted(path.stem for path in Path(__file__).resolve().parent.glob("bench_*.py"))


def smoke(args) -> list:
    """Each benchmark's `run` at its smoke size, with its own options at their defaults."""
    lines = []
    for name in every_benchmark():
        module = importlib.import_module(name)
        options = common.parser(name, getattr(module, "add_options", None)).parse_args(
            ["--smoke", "--work", str(args.work)] + (["--threads", str(args.threads)] if args.threads else [])
        )
        began, cpu = time.time(), common.cpu_seconds()
        records = module.run(options)
        lines += records
        lines.append(
            common.emit(
                {
                    "bench": "done",
                    "module": name,
                    "records": len(records),
                    "finished_in_s": round(time.time() - began, 1),
                    "cpu_s": round(common.cpu_seconds() - cpu, 1),
                }
            )
        )
    return lines


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset, e.g. B1,B3")
    parser.add_argument("--out", help="also append every JSON line to this file")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    common.setup(args)
    started = time.time()
    lines = [common.emit({**common.machine(), "smoke": True})] + smoke(args) if args.smoke else []
    for name in [] if args.smoke else chosen:
        lines.append(common.emit(common.machine()))
        began = time.time()
        lines += BENCHMARKS[name].run(args)
        lines.append(common.emit({"bench": name, "finished_in_s": round(time.time() - began, 1)}))
    missed = [] if args.smoke else [line for line in lines if line.get("met") is False]
    lines.append(
        common.emit(
            {
                "bench": "summary",
                "quick": args.quick,
                "smoke": args.smoke,
                "seconds": round(time.time() - started, 1),
                "targets_missed": [
                    {k: line.get(k) for k in ("bench", "arch", "k", "size", "baseline_is") if line.get(k) is not None}
                    for line in missed
                ],
            }
        )
    )
    if args.out:
        with open(args.out, "a") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
