"""Shared by every benchmark: the machine record, alternating side-by-side runs, medians, JSON lines, child
processes (peak RSS, first-step timestamps), and the data the benchmarks train and tokenize.

Conventions: each benchmark prints `{"bench": "machine", ...}` first, then one JSON line per measurement
with `ours`, `baseline` and `ratio` = how many times better ours is (ours/baseline for rates, baseline/ours
for times and memory). Sides run alternately (ours, baseline, ours, baseline, ...) so that a change in
machine load hits both; the medians are reported, with every run's value under `runs`, and, where the runs
come in pairs, `pair_ratio_median`: the median of the per-pair ratios, which a load that changes from one
pair to the next does not skew.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "src" / "parc" / "demo_corpus" / "shakespeare.jsonl.gz"
BUSY_LOAD = 1.5  # 1-minute load average above which timings are flagged as taken on a busy machine
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "disabled",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "true",
}


def offline() -> None:
    """Benchmarks never touch the network: set before transformers / datasets are imported."""
    os.environ.update({k: v for k, v in OFFLINE.items() if k not in os.environ})


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, memory, accelerator, library versions, load, date."""
    import torch
    import transformers

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0]
    return {
        "bench": "machine",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 2**20, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_1min": round(load, 2),
        "busy": load > BUSY_LOAD,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def median(values: List[float]) -> float:
    return statistics.median(values)


def compare(bench: str, unit: str, runs: Dict[str, List[float]], better: str = "higher", **fields) -> dict:
    """The JSON record of one measurement from each side's runs: medians and how many times better ours is."""

    def times_better(a: float, b: float) -> float:
        return a / b if better == "higher" else b / a

    ours, baseline = median(runs["ours"]), median(runs["baseline"])
    record = {
        "bench": bench,
        **fields,
        "unit": unit,
        "ours": _round(ours),
        "baseline": _round(baseline),
        "ratio": round(times_better(ours, baseline), 3),
        "better": better,
        "runs": {side: [_round(v) for v in values] for side, values in runs.items()},
    }
    if len(runs["ours"]) == len(runs["baseline"]) > 1:  # paired runs: load that changes between pairs cancels
        record["pair_ratio_median"] = round(
            median([times_better(a, b) for a, b in zip(runs["ours"], runs["baseline"])]), 3
        )
    return record


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def alternate(sides: Dict[str, Callable[[], float]], repeats) -> Dict[str, List[float]]:
    """Run the sides interleaved, in the given order, `repeats` times each (an int, or a count per side:
    a side with fewer runs drops out of the later rounds). Returns every measured value, per side."""
    counts = repeats if isinstance(repeats, dict) else {name: repeats for name in sides}
    runs: Dict[str, List[float]] = {name: [] for name in sides}
    for round_ in range(max(counts.values())):
        for name, measure in sides.items():
            if round_ < counts[name]:
                runs[name].append(measure())
    return runs


def child(args: List, env: Optional[dict] = None, timeout: float = 3600, local: bool = False) -> dict:
    """Run `python <args>` to completion; its stdout, wall seconds and start time (time.time()).

    local=True (smoke mode): the same work in this interpreter instead (`in_process`), no process to start."""
    if local:
        return in_process(args, env)
    full_env = {**os.environ, **OFFLINE, **(env or {})}
    started = time.time()
    result = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"child {' '.join(map(str, args[:3]))} exited {result.returncode}\n{result.stderr[-3000:]}")
    return {"stdout": result.stdout, "stderr": result.stderr, "seconds": time.time() - started, "started": started}


def in_process(args: List, env: Optional[dict] = None) -> dict:
    """`python <args>` run in this interpreter, its stdout captured: `-m <module> ...` as `python -m` runs it,
    `-c <script> ...`, or `<benchmarks/bench_X.py> --child ...` through that module's `child_main`. For smoke
    runs, which check that the code runs and pay no interpreter starts (their timings mean nothing)."""
    import contextlib
    import importlib
    import io
    import runpy

    args = [str(a) for a in args]
    out, err, started = io.StringIO(), io.StringIO(), time.time()
    saved_argv, saved_env = sys.argv, dict(os.environ)
    os.environ.update({**OFFLINE, **(env or {})})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if args[0] == "-m":
                sys.argv = args[1:]
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            elif args[0] == "-c":
                sys.argv = ["-c", *args[2:]]
                exec(compile(args[1], "<child>", "exec"), {"__name__": "__main__"})
            else:
                importlib.import_module(Path(args[0]).stem).child_main(args[2:])
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(f"child {' '.join(args[:3])} exited {exc.code}\n{err.getvalue()[-3000:]}") from None
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "seconds": time.time() - started, "started": started}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended: the work done, whatever ran beside it."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory since it exec'd (VmHWM). Not getrusage's ru_maxrss: Linux carries
    the spawning parent's high-water mark into a child's ru_maxrss at exec, so a child spawned by a large
    benchmark process would report at least the parent's size."""
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best there is


def stamped(stdout: str, marker: str) -> float:
    """The time.time() a child printed as `<marker> <seconds>`."""
    for line in stdout.splitlines():
        if line.startswith(marker + " "):
            return float(line.split()[1])
    raise RuntimeError(f"child printed no {marker!r} line:\n{stdout[-2000:]}")


def train_on_random_tokens(overrides: List[str], side: str, steps: int) -> List[float]:
    """`steps` optimizer steps of the config's model on one random micro-batch; seconds of each step.

    The model is built as Parc built it (`parc.archs.build_model`); "ours" installs its fast path
    (`arch.fast_path=auto`), "baseline" keeps transformers' own forward, as the original script ran. Both use
    `parc.training.optim`'s AdamW (the Trainer's decay groups; fused on CUDA) and clip at the recipe's norm.
    """
    import torch

    from parc import archs
    from parc.config import compose
    from parc.training.optim import build_optimizer

    cfg = compose(overrides)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed, device=device)
    if side == "ours":
        archs.get_spec(cfg.arch.name).apply_fast_path(model, "auto", device)
    optimizer = build_optimizer(model, cfg.trainer, device)
    ids = torch.randint(0, cfg.data.vocab_size, (cfg.trainer.micro_batch_size, cfg.data.seq_len), device=device)
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def demo_root(work: Path) -> Path:
    """A paths.root whose data/ holds the prepared demo stream (prepared once, in-process, by parc.prepare)."""
    from parc.config import compose
    from parc.data.prepare import prepare_data

    root = work / "demo"
    prepare_data(compose(["experiment=demo", f"paths.root={root}"]), progress=False)
    return root


def demo_tokenizer_dir(work: Path) -> Path:
    return demo_root(work) / "data" / "demo-parc-128" / "tokenizer"


def owt_like_documents(tokenizer_dir: Path, tokens_per_doc: int = 1100) -> List[str]:
    """The demo plays cut into documents of ~`tokens_per_doc` tokens (OpenWebText's mean is ~1.1k GPT-2
    tokens), each long enough for one full 1024-token Parc sequence. Cut on token boundaries, in order;
    cached beside the tokenizer, so that timed children only read them."""
    cache = Path(tokenizer_dir).parent / f"documents-{tokens_per_doc}-tokens.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    plays = [json.loads(line)["text"] for line in gzip.open(DEMO_CORPUS, "rt")]
    documents = []
    for play, encoding in zip(plays, tokenizer.encode_batch(plays)):
        offsets = encoding.offsets
        for start in range(0, len(offsets) - tokens_per_doc + 1, tokens_per_doc):
            documents.append(play[offsets[start][0] : offsets[start + tokens_per_doc - 1][1]])
    tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
    tmp.write_text(json.dumps(documents))
    os.replace(tmp, cache)
    return documents


def cycled(documents: List[str], count: int) -> Iterator[str]:
    """`count` documents: the list repeated as often as needed (a stream longer than the corpus)."""
    for i in range(count):
        yield documents[i % len(documents)]


def parser(description: str, add_options: Optional[Callable] = None) -> argparse.ArgumentParser:
    """The options every benchmark takes, then its own (`add_options(parser)`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (the whole suite in minutes)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one tiny pair per benchmark, in-process, in seconds: "
        "checks that the benchmark still runs (CI does, tests/test_benchmarks.py); its numbers mean nothing",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "parc-bench",
        help="scratch directory for data and runs (reused between runs)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads, here and in child processes (default: torch's "
        "choice, all cores); 1 steadies training timings on a machine others are using",
    )
    if add_options is not None:
        add_options(p)
    return p


def setup(args: argparse.Namespace) -> None:
    """Offline, the scratch directory, and the torch thread count the arguments ask for."""
    offline()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children: B2, B4 and GPU train in their own processes
        torch.set_num_threads(args.threads)


def standalone(
    run: Callable[[argparse.Namespace], List[dict]], description: str, add_options: Optional[Callable] = None
) -> None:
    """`python benchmarks/bench_X.py [--quick | --smoke]`: the machine line, then the benchmark's JSON lines."""
    args = parser(description, add_options).parse_args()
    setup(args)
    emit({**machine(), "smoke": args.smoke})
    run(args)
