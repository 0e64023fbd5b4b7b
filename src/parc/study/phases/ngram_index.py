"""A suffix-array index of the token sequences a run trained on (infini-gram's engine), for exact n-gram counts.

The index holds rows of a packed stream (`PackedStream.sequences`): each training sequence is one infini-gram
"document", so no counted n-gram spans two sequences (the model never saw such a span in one context).
infini-gram's Rust indexer builds the suffix array (`table.0`) over the token file (`tokenized.0`) and its C++
engine counts a token sequence with two binary searches, so a count costs O(log N) whatever the corpus size.

Word counts: a word is counted where its token sequence (with its leading-space token) ends at a word boundary,
i.e. where the next token does not continue the word (a token starting with a letter, or an apostrophe then a
letter: " the" followed by "ory" is part of " theory", not the word "the"). To count those occurrences
without a query per continuation token, the index stores token ids *re-ranked* so that every continuation
token sorts after every other token: the suffixes of a query followed by a continuation token are then one
contiguous range of the suffix array, found with two more binary searches. The engine compares tokens as
little-endian bytes, so a token of rank r is stored as the integer whose little-endian bytes are r's
big-endian bytes; byte order then equals rank order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

from parc.data.files import private_tmp_dir, publish_dir, remove_dead_tmp_dirs
from parc.errors import ParcError
from parc.store.fileio import atomic_write_json

FORMAT = "parc-ngram-index/1"
META = "parc_ngram_index.json"
TOKENIZER = "tokenizer"  # a copy of the stream's tokenizer: word n-grams are tokenized with it
RANKS = "ranks.npy"  # ranks[token_id] = the token's rank in the index's sort order
HACK = 100_000  # bytes of overlap between suffix-array parts, as infini-gram's indexing.py uses


def infini_gram():
    try:
        import infini_gram  # noqa: F401
        from infini_gram.engine import InfiniGramEngine
    except ImportError:
        raise ParcError("the n-gram index needs infini-gram: pip install 'parc[study]'") from None
    return Path(infini_gram.__file__).parent / "rust_indexing", InfiniGramEngine


def continues_word(text: str) -> bool:
    """Does a token whose text is `text` continue the word before it (no space, starts with a letter)?"""
    return bool(text) and (text[0].isalpha() or (text[0] == "'" and len(text) > 1 and text[1].isalpha()))


def continuation_tokens(tokenizer, vocab_size: int) -> np.ndarray:
    """Boolean [vocab_size]: the ids of tokens that continue a word (see `continues_word`)."""
    special = set(tokenizer.all_special_ids)
    return np.array([i not in special and continues_word(tokenizer.decode([i])) for i in range(vocab_size)])


def token_width(vocab_size: int) -> int:
    """Bytes per stored token: the all-ones value is infini-gram's document separator, so keep it unused."""
    return 2 if vocab_size < 0xFFFF else 4


def stored_ids(ranks: np.ndarray, width: int) -> np.ndarray:
    """The stored integer of each rank: its big-endian bytes read as little-endian (byte order = rank order)."""
    return np.asarray(ranks, dtype=f">u{width}").view(f"<u{width}").astype(np.int64)


class NgramIndex:
    """An opened index: exact counts of token sequences, with or without the word-boundary condition."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        meta_path = self.directory / META
        if not meta_path.is_file():
            raise ParcError(
                f"{self.directory} is not an n-gram index ({META} missing): leave index= unset to "
                f"build one, or point it at a directory python -m parc.ngrams built"
            )
        self.meta = json.loads(meta_path.read_text())
        self.width = int(self.meta["token_width"])
        ranks = np.load(self.directory / RANKS)
        self.vocab_size = len(ranks)
        self.stored = stored_ids(ranks, self.width)  # token id -> stored id
        first_continuation = self.vocab_size - int(self.meta["continuation_tokens"])
        # Stored ids bracketing the continuation ranks [first, vocab_size): the end rank is never stored.
        self.continuation_bounds = stored_ids(np.array([first_continuation, self.vocab_size]), self.width)
        _, engine_class = infini_gram()
        self.engine = engine_class(
            index_dir=str(self.directory),
            eos_token_id=int(self.stored[0]),
            vocab_size=2 ** (8 * self.width) - 1,
            token_dtype=f"u{8 * self.width}",
        )
        self.num_tokens = int(self.meta["num_tokens"])

    def tokenizer(self):
        from parc.data.tokenizer import load_saved_tokenizer

        return load_saved_tokenizer(self.directory / TOKENIZER)

    @property
    def tokenizer_sha256(self) -> str:
        return self.meta["tokenizer_sha256"]

    def _segment(self, stored: List[int]) -> tuple:
        (segment,) = self.engine.find(stored)["segment_by_shard"]
        return segment

    def count(self, ids: Sequence[int], word_end: bool = True) -> int:
        """Occurrences of the token sequence `ids` in the indexed rows; with `word_end`, only those not
        followed by a token that continues the word."""
        stored = [int(self.stored[i]) for i in ids]
        low, high = self._segment(stored)
        total = high - low
        if word_end and total:
            continued = (
                self._segment(stored + [int(self.continuation_bounds[1])])[0]
                - self._segment(stored + [int(self.continuation_bounds[0])])[0]
            )
            total -= continued
        return int(total)


def build_index(
    directory: Path,
    row_batches: Iterable[np.ndarray],
    meta: dict,
    tokenizer_dir: Path,
    vocab_size: int,
    cpus: int = 1,
    mem_gib: float = 4.0,
    log=print,
    continuation: Optional[np.ndarray] = None,
) -> NgramIndex:
    """Write the rows of `row_batches` (int arrays [rows, seq_len]) as an index in `directory` (published by
    rename when complete) and open it. `meta` (the stream's fingerprint) is stored in the index's record, and
    the stream's tokenizer in `tokenizer/`, so an index is usable on its own. `continuation` (which ids
    continue a word) is read from the tokenizer unless given."""
    from parc.data.tokenizer import load_saved_tokenizer, tokenizer_sha256

    binary, _ = infini_gram()
    if continuation is None:
        continuation = continuation_tokens(load_saved_tokenizer(tokenizer_dir), vocab_size)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_tmp_dirs(directory)
    tmp = private_tmp_dir(directory)
    started = time.perf_counter()
    width = token_width(vocab_size)
    order = np.concatenate([np.flatnonzero(~continuation), np.flatnonzero(continuation)])
    ranks = np.empty(vocab_size, dtype=np.int64)
    ranks[order] = np.arange(vocab_size)
    stored = stored_ids(ranks, width).astype(f"<u{width}")
    separator = np.array([2 ** (8 * width) - 1], dtype=f"<u{width}")
    rows = tokens = 0
    with open(tmp / "tokenized.0", "wb") as data, open(tmp / "offset.0", "wb") as offsets:
        for batch in row_batches:
            batch = np.asarray(batch)
            if batch.size and (batch.min() < 0 or batch.max() >= vocab_size):
                raise ParcError(
                    f"the stream holds token ids outside 0..{vocab_size - 1}: the data does not match "
                    f"its tokenizer; prepare it again"
                )
            framed = np.empty((len(batch), batch.shape[1] + 1), dtype=f"<u{width}")
            framed[:, 0] = separator
            framed[:, 1:] = stored[batch]
            starts = (rows + np.arange(len(batch), dtype=np.uint64)) * np.uint64(framed.shape[1] * width)
            offsets.write(starts.astype("<u8").tobytes())
            data.write(framed.tobytes())
            rows, tokens = rows + len(batch), tokens + batch.size
    if not tokens:
        raise ParcError("no training tokens to index: the run consumed no data up to that step; choose a later step")
    np.save(tmp / RANKS, ranks)
    shutil.copytree(tokenizer_dir, tmp / TOKENIZER)
    _suffix_array(binary, tmp, width, cpus, mem_gib)
    build_s = time.perf_counter() - started
    record = {
        "format": FORMAT,
        **meta,
        "tokenizer_sha256": tokenizer_sha256(tokenizer_dir),
        "token_width": width,
        "rows": rows,
        "num_tokens": tokens,
        "continuation_tokens": int(continuation.sum()),
        "build_seconds": round(build_s, 3),
        "bytes": sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()),
    }
    atomic_write_json(tmp / META, record)
    publish_dir(tmp, directory)
    log(
        f"parc.ngrams: indexed {tokens} tokens ({rows} sequences) in {build_s:.1f} s, "
        f"{record['bytes'] / 2**20:.1f} MiB at {directory}"
    )
    return NgramIndex(directory)


def _suffix_array(binary: Path, directory: Path, width: int, cpus: int, mem_gib: float) -> None:
    """infini-gram's three steps (make-part, merge, concat), with its own part sizing, as indexing.py runs them."""
    data = directory / "tokenized.0"
    size = data.stat().st_size
    ratio = int(np.ceil(np.log2(size) / 8))  # bytes per suffix-array pointer
    batches = 1
    while batches * (int(mem_gib * 2**30) // 8) < size:
        batches *= 2
    jobs = batches * cpus
    part = -(-(size // jobs) // width) * width  # whole tokens per part
    parts, merged = directory / "parts", directory / "merged"
    parts.mkdir()
    merged.mkdir()
    common = ["--data-file", str(data), "--ratio", str(ratio), "--token-width", str(width)]
    for first in range(0, jobs, cpus):
        running = [
            subprocess.Popen(
                [
                    str(binary),
                    "make-part",
                    *common,
                    "--parts-dir",
                    str(parts),
                    "--start-byte",
                    str(i * part),
                    "--end-byte",
                    str(min((i + 1) * part + HACK, size)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(first, min(first + cpus, jobs))
            if i * part < size
        ]
        _wait(running, "make-part")
    _wait(
        [
            subprocess.Popen(
                [
                    str(binary),
                    "merge",
                    *common,
                    "--parts-dir",
                    str(parts),
                    "--merged-dir",
                    str(merged),
                    "--num-threads",
                    str(cpus),
                    "--hacksize",
                    str(HACK),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        ],
        "merge",
    )
    _wait(
        [
            subprocess.Popen(
                [
                    str(binary),
                    "concat",
                    *common,
                    "--merged-dir",
                    str(merged),
                    "--merged-file",
                    str(directory / "table.0"),
                    "--num-threads",
                    str(cpus),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        ],
        "concat",
    )
    for leftover in (parts, merged):
        shutil.rmtree(leftover)


def _wait(processes: List[subprocess.Popen], stage: str) -> None:
    failures = [(p.wait(), p.stderr.read().decode(errors="replace").strip()) for p in processes]
    for code, err in failures:
        if code:
            raise ParcError(
                f"infini-gram's indexer failed in {stage} (exit {code}: {err.splitlines()[-1] if err else ''}): "
                f"check free disk space and memory, then run again"
            )


def open_or_none(directory: Optional[Path]) -> Optional[NgramIndex]:
    return NgramIndex(directory) if directory is not None and (Path(directory) / META).is_file() else None
