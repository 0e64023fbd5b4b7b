"""Benchmarks cannot rot: `benchmarks/run.py --smoke` runs every `benchmarks/bench_*.py` (found by name, so a new
one is covered) at one tiny size in one process, so that a moved module or a changed signature fails here and
not in the next person's measurement. Nothing about speed is asserted (speed lives in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

BENCHMARKS = REPO / "benchmarks"
COMPARED = {"bench", "unit", "ours", "baseline", "ratio", "better", "runs"}  # common.compare's record


def test_every_benchmark_runs_in_smoke_mode(tmp_path):
    modules = sorted(path.stem for path in BENCHMARKS.glob("bench_*.py"))
    assert len(modules) >= 11
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--smoke", "--threads", "1", "--work", str(tmp_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["bench"] == "machine" and lines[0]["smoke"] is True
    assert lines[-1]["bench"] == "summary" and lines[-1]["smoke"] is True
    emitted, records = {}, []
    for line in lines[1:-1]:
        if line["bench"] == "done":
            emitted[line["module"]] = records
            assert line["records"] == len(records), line
            records = []
        else:
            records.append(line)
    assert list(emitted) == modules and not records  # each benchmark ran, in order, and said so
    for module, produced in emitted.items():
        assert produced, f"{module} emitted no measurement"
        for record in produced:
            assert {"bench", "unit"} <= set(record) and "skipped" not in record, (module, record)
            if "ours" in record:  # a side-by-side measurement: both sides measured, a finite ratio
                assert COMPARED <= set(record), (module, record)
                assert record["ours"] > 0 and record["baseline"] > 0 and record["ratio"] > 0, (module, record)
    assert {r["bench"] for rs in emitted.values() for r in rs} >= {
        "B1",
        "B2",
        "B3",
        "B4",
        "GPU",
        "E1",
        "E2",
        "S1",
        "N1",
        "P-hub",
        "verify",
    }
