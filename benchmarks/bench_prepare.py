"""B3: data preparation throughput in tokens/s: ours (`parc.data.prepare`) vs the original's streaming
`datasets.map` tokenization, and vs the raw `tokenizers` batch-encode limit on all cores.

The corpus is the demo's Shakespeare cut into OpenWebText-sized documents (~1.1k tokens), repeated to a
meaningful size and written as JSON lines; the tokenizer is the demo's trained BPE (offline). All three
sides process the same documents with the same tokenizer and are credited with the same number of tokens
(every token of every document):
- ours: `prepare_data` end to end: load the JSON lines, tokenize in batches, pack (Parc rule, seq 1024),
  write the arrays and the manifest (a fresh data dir each run: nothing cached);
- original: the script's `load_dataset(..., streaming=True).map(tokenize, batched=True)`, iterated to the end;
- limit: `tokenizers.Tokenizer.encode_batch_fast` over the texts already in memory, 1000 at a time.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

import common

SEQ_LEN = 1024
TARGET_OF_LIMIT = 0.9


def sizes(args) -> dict:
    """The corpus: the demo's documents (or the first `documents` of them) `corpus_repeats` times; rounds."""
    if args.smoke:
        return {"corpus_repeats": 1, "documents": 20, "repeats": 1}
    return {"corpus_repeats": 2, "repeats": 2} if args.quick else {"corpus_repeats": 10, "repeats": 3}


def write_corpus(work: Path, repeats: int, documents: Optional[int] = None) -> Path:
    path = work / "b3" / (f"corpus-x{repeats}.jsonl" if documents is None else f"corpus-{documents}-x{repeats}.jsonl")
    if not path.is_file():
        documents = common.owt_like_documents(common.demo_tokenizer_dir(work))[:documents]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            for text in common.cycled(documents, len(documents) * repeats):
                handle.write(json.dumps({"text": text}) + "\n")
        tmp.replace(path)
    return path


def prepare_config(work: Path, corpus: Path, data_dir: Path):
    from parc.config import compose

    return compose(
        [
            "experiment=demo",
            f"data.data_files={corpus}",
            f"data.dir={data_dir}",
            f"data.tokenizer={common.demo_tokenizer_dir(work)}",
            f"data.seq_len={SEQ_LEN}",
        ]
    )


def ours(work: Path, corpus: Path, tokens: int) -> float:
    """Seconds of a complete `prepare_data` into a fresh directory (which must tokenize `tokens` tokens)."""
    from parc.data.prepare import prepare_data

    data_dir = work / "b3" / "prepared"
    shutil.rmtree(data_dir, ignore_errors=True)
    cfg = prepare_config(work, corpus, data_dir)  # composing the config is argument parsing, not preparation
    started = time.perf_counter()
    report = prepare_data(cfg, progress=False)
    seconds = time.perf_counter() - started
    shutil.rmtree(data_dir)
    if report.manifest["tokens"]["in"] != tokens:
        raise RuntimeError(f"prepare tokenized {report.manifest['tokens']['in']} tokens, the limit {tokens}")
    return seconds


def original(work: Path, corpus: Path) -> float:
    """Seconds to stream the corpus through the script's map(tokenize) to the end."""
    import original as script
    from datasets import load_dataset
    from transformers import AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(common.demo_tokenizer_dir(work)))
    stream = load_dataset("json", data_files=str(corpus), split="train", streaming=True)
    mapped = stream.map(script.tokenize_function(tokenizer, SEQ_LEN), batched=True, remove_columns=stream.column_names)
    for _ in mapped:
        pass
    return time.perf_counter() - started


def limit(work: Path, texts: list) -> tuple[float, int]:
    """(seconds, tokens) of the bare Rust batch encode, all cores, texts in memory: `encode_batch_fast` (no
    character offsets), the fastest call `tokenizers` has."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(common.demo_tokenizer_dir(work) / "tokenizer.json"))
    started = time.perf_counter()
    tokens = sum(
        len(e.ids) for i in range(0, len(texts), 1000) for e in tokenizer.encode_batch_fast(texts[i : i + 1000])
    )
    return time.perf_counter() - started, tokens


def run(args) -> list:
    size = sizes(args)
    corpus = write_corpus(args.work, size["corpus_repeats"], size.get("documents"))
    texts = [json.loads(line)["text"] for line in open(corpus)]
    _, tokens = limit(args.work, texts)  # every side is credited with these: all the corpus's tokens
    # Imports are no side's work: the first timed run must not pay for them (torch, via AutoTokenizer, ~1.5 s).
    import datasets  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401

    import parc.data.prepare  # noqa: F401

    sides = {
        "ours": lambda: tokens / ours(args.work, corpus, tokens),
        "baseline": lambda: tokens / original(args.work, corpus),
        "limit": lambda: tokens / limit(args.work, texts)[0],
    }
    runs = common.alternate(sides, size["repeats"])
    described = {"documents": len(texts), "tokens": tokens, "seq_len": SEQ_LEN}
    versus_original = common.compare(
        "B3",
        "tokens/s",
        {"ours": runs["ours"], "baseline": runs["baseline"]},
        baseline_is="original streaming datasets.map tokenize",
        **described,
    )
    versus_limit = common.compare(
        "B3",
        "tokens/s",
        {"ours": runs["ours"], "baseline": runs["limit"]},
        baseline_is="tokenizers encode_batch_fast limit (all cores)",
        target=TARGET_OF_LIMIT,
        **described,
    )
    versus_limit["met"] = versus_limit["ratio"] >= TARGET_OF_LIMIT
    return [common.emit(versus_original), common.emit(versus_limit)]


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
