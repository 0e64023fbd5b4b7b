"""N1: the n-gram index (infini-gram's suffix array over packed training sequences): size, build time, query rate.

    python benchmarks/bench_ngram_index.py [--tokens 20000000] [--queries 3000]

Builds `parc.study.phases.ngram_index` over a synthetic stream shaped like OpenWebText's (Zipf-distributed ids over
a 50,277-token vocabulary, 1,024-token sequences) and reports bytes per token, build seconds (wall and the
indexer's CPU), and counts per second for random 1..5-gram queries taken from the data, with and without the
word-boundary condition (which costs two more binary searches). The stream is synthetic, so the numbers say
how the index scales, not how often real words co-occur. Extrapolation to the Parc run (4000 x 512 x 1024
= 2.1 B tokens) is linear for size and build (infini-gram's indexer is O(N log N) in practice, with parts
sized to memory) and logarithmic for a query. Prints one JSON line (`"bench": "N1"`); `--smoke`: 64 sequences,
50 queries (checks the benchmark runs).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import common

VOCAB, SEQ_LEN = 50277, 1024


def synthetic_rows(tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = tokens // SEQ_LEN
    for start in range(0, rows, 1024):
        count = min(1024, rows - start)
        yield np.minimum(rng.zipf(1.2, size=(count, SEQ_LEN)), VOCAB - 1)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def add_options(parser) -> None:
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--queries", type=int, default=3000)


def run(args) -> list:
    import parc.study.phases.ngram_index as ngram_index

    tokens, query_count = (SEQ_LEN * 64, 50) if args.smoke else (args.tokens, args.queries)
    args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ngram-", dir=args.work))
    tokenizer_dir = work / "tok"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "tokenizer.json").write_text("{}")  # recorded by hash only: the ids are synthetic
    continuation = np.arange(VOCAB) % 2 == 1  # about half a GPT-2 BPE's tokens continue a word
    cpu0, wall0 = children_cpu(), time.perf_counter()
    index = ngram_index.build_index(
        work / "index",
        synthetic_rows(tokens),
        {},
        tokenizer_dir,
        VOCAB,
        log=lambda line: None,
        continuation=continuation,
    )
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    size = index.meta["bytes"]
    rng = np.random.default_rng(1)
    sample = next(synthetic_rows(SEQ_LEN * 64, seed=0))
    queries = [
        sample[rng.integers(64), (c := rng.integers(SEQ_LEN - 5)) : c + rng.integers(1, 6)].tolist()
        for _ in range(query_count)
    ]
    rates, cpu_rates = {}, {}
    for word_end in (False, True):
        started, cpu_started = time.perf_counter(), time.process_time()  # the engine's threads are ours
        for ids in queries:
            index.count(ids, word_end=word_end)
        rates[word_end] = len(queries) / (time.perf_counter() - started)
        cpu_rates[word_end] = len(queries) / (time.process_time() - cpu_started)
    parc_tokens = 4000 * 512 * 1024
    pointer = int(np.ceil(np.log2(parc_tokens * 2) / 8))
    record = {
        "bench": "N1",
        "unit": "counts/s",
        "tokens": index.num_tokens,
        "index_bytes": size,
        "bytes_per_token": round(size / index.num_tokens, 2),
        "build_wall_s": round(wall, 2),
        "indexer_cpu_s": round(cpu, 2),
        "build_M_tokens_per_s": round(index.num_tokens / wall / 1e6, 2),
        "queries": len(queries),
        "counts_per_s": {"plain": round(rates[False]), "word_end": round(rates[True])},
        "counts_per_cpu_s": {"plain": round(cpu_rates[False]), "word_end": round(cpu_rates[True])},
        # Parc scale (2.10 B tokens): 2 bytes per token + the suffix pointers; the build extrapolated linearly
        "parc_scale_index_gib": round(parc_tokens * (2 + pointer) / 2**30, 1),
        "parc_scale_build_min": round(parc_tokens / index.num_tokens * wall / 60),
    }
    shutil.rmtree(work)
    return [common.emit(record)]


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0], add_options)
