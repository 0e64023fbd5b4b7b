"""`python benchmarks/run.py [--quick] [--only B1,B3] [--out results.jsonl]`: every benchmark, side by side.

Prints one JSON line per measurement (and, before each benchmark, a `{"bench": "machine", ...}` line), then
a summary line. `--quick` runs the small sizes (minutes on 2 cores); without it, the sizes quoted in
BENCHMARKS.md. Timings are not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import json
import time

import bench_evaluate
import bench_gpu
import bench_memorization
import bench_memory
import bench_prepare
import bench_resume
import bench_surprisal
import bench_throughput
import common

BENCHMARKS = {"B1": bench_throughput, "B2": bench_resume, "B3": bench_prepare, "B4": bench_memory,
              "GPU": bench_gpu, "E1": bench_evaluate, "E2": bench_memorization, "S1": bench_surprisal}


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
    lines = []
    for name in chosen:
        lines.append(common.emit(common.machine()))
        began = time.time()
        lines += BENCHMARKS[name].run(args)
        lines.append(common.emit({"bench": name, "finished_in_s": round(time.time() - began, 1)}))
    missed = [line for line in lines if line.get("met") is False]
    lines.append(common.emit({"bench": "summary", "quick": args.quick, "seconds": round(time.time() - started, 1),
                              "targets_missed": [{k: line.get(k) for k in ("bench", "arch", "k", "size", "baseline_is")
                                                  if line.get(k) is not None} for line in missed]}))
    if args.out:
        with open(args.out, "a") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
