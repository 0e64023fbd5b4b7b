"""Cost of verifying a Parc-size checkpoint before resuming (parc.store.integrity.verify): sha256 of every listed file.

A Pythia-160M checkpoint (162M parameters, vocab 50277) with its AdamW state is written once by
parc.store.checkpoint.save (~2 GB). Then, alternating, medians: ours = `verify(check_sha=True)` (size + streamed
sha256 of every file), against the floor of reading the same bytes once (16 MB blocks, no hashing), and the
size-only check. With --cold the page cache is dropped before every measurement (needs root), so the
numbers include reading from the disk, as on a fresh node.

    python benchmarks/bench_verify.py [--cold] [--repeats 3] [--work DIR]

`--smoke`: the demo's tiny model instead, one round (checks the benchmark runs).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import common

SIZES = {"parc": ["arch=pythia", "data.vocab_size=50277"], "demo": ["experiment=demo", "arch=pythia"]}


def make_checkpoint(work: Path, size: str) -> Path:
    import torch
    from accelerate import Accelerator

    from parc import archs
    from parc.config import compose
    from parc.store import checkpoint
    from parc.training.optim import build_optimizer, build_scheduler

    run_dir = work / "verify" / size
    path = run_dir / "checkpoint-10"
    if checkpoint.is_complete(path):
        return path
    cfg = compose(SIZES[size])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    optimizer = build_optimizer(model, cfg.trainer, torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # AdamW's two moments now exist for every parameter, as after any real step
    scheduler = build_scheduler(optimizer, cfg.trainer)
    tokenizer = run_dir / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "tokenizer.json").write_bytes(b"{}" + b" " * (2 << 20))  # GPT-NeoX's tokenizer.json is ~2 MB
    return checkpoint.save(
        Accelerator(cpu=True),
        run_dir,
        10,
        model,
        optimizer,
        scheduler,
        tokenizer,
        {"step": 10, "tokens": 10},
        scheduled=True,
    )


def read_once(path: Path) -> None:
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def add_options(parser) -> None:
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each measurement (root)")


def run(args) -> list:
    from parc.store import integrity

    path = make_checkpoint(args.work, "demo" if args.smoke else "parc")
    repeats = 1 if args.smoke else args.repeats
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    sides = {
        "ours (size + sha256)": lambda: integrity.verify(path, check_sha=True),
        "read once (floor)": lambda: read_once(path),
        "size only": lambda: integrity.verify(path, check_sha=False),
    }
    runs = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            if args.cold:
                drop_caches()
            started = time.perf_counter()
            result = fn()
            runs[name].append(time.perf_counter() - started)
            assert result is None or result.ok, result
    medians = {name: statistics.median(times) for name, times in runs.items()}
    return [
        common.emit(
            {
                "bench": "verify",
                "bytes": size,
                "cold": args.cold,
                "unit": "s",
                "medians": medians,
                "GB_per_s_sha256": size / medians["ours (size + sha256)"] / 1e9,
                "ratio_to_read": medians["ours (size + sha256)"] / medians["read once (floor)"],
                "runs": runs,
                "load_1min": os.getloadavg()[0],
            }
        )
    ]


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0], add_options)
