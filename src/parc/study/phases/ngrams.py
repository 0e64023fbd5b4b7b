"""`python -m parc.ngrams`: n-gram log-probabilities of every stimulus target, from the data the model saw.

    python -m parc.ngrams stimuli=all_stims.stims data=openwebtext          # the whole prepared stream
    python -m parc.ngrams stimuli=demo.stims runs=runs/demo [upto_step=N]   # exactly the runs' training batches
    python -m parc.ngrams stimuli=demo.stims runs=runs/demo corpus=stream   # the runs' whole stream

Counts come from the run's own packed token stream. `corpus=consumed` (the default with `runs=`): the
sequences of training steps 1..N of that run's shard and order (`BatchPlan`; N = `upto_step`, default the
run's last step), so "matched" means exactly the training data. `corpus=stream` (the default with `data=`
only; the paper's choice, which counted all of OpenWebText): every sequence of the prepared stream except
the rows of the documents the stimuli were drawn from (their `.origins.json`, written by parc.stimuli), so
no stimulus sentence is counted from its own source; a set without origins (built elsewhere) excludes
nothing, with a note. Every other argument is a training override (`data=`, `experiment=`, `paths.root=`,
...) that says where the prepared data lives. `ngrams.json` also reports the coverage: per order n, the
fraction of stimuli whose n-gram ending at the target occurs at least once. `vectors=true` also trains
fastText vectors (gensim, parc.study.phases.context_similarity) on the counted sequences' text, one sequence a
sentence, into `<out>/fasttext.bin`, which parc.phases then uses for the context-similarity predictors.
The index (`ngram_index.py`) is built once per stream selection under `<out>/ngram_index/<fingerprint>/`
(or `index=<dir>`, an index built before) and reused; a run whose tokenizer is not the index's is refused.
Writes `<out>/ngrams.parquet` (stimulus_id, order, logprob) and `<out>/ngrams.json` (the index fingerprint),
and skips the work when both already match the stimuli and the stream.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from parc.config import compose
from parc.data.stream import BatchPlan, open_stream
from parc.data.tokenizer import tokenizer_sha256
from parc.errors import ParcError
from parc.store.fileio import atomic_write, atomic_write_json, sha256_file
from parc.study.phases.ngram_backoff import ALPHA, ORDERS, WordCounter, ngram_rows
from parc.study.phases.ngram_index import NgramIndex, build_index, open_or_none
from parc.training.runconfig import config_on_this_machine

VECTORS = "fasttext.bin"  # vectors=true: fastText trained on the counted text, read by parc.phases
CORPORA = ("consumed", "stream")
ROWS_PER_READ = 4096


class StreamSelection:
    """Which packed sequences to count: a stream, and a row selection with its fingerprint."""

    def __init__(self, stream, rows: np.ndarray, fingerprint: dict):
        self.stream, self.rows, self.fingerprint = stream, rows, fingerprint

    def batches(self):
        for start in range(0, len(self.rows), ROWS_PER_READ):
            yield self.stream.sequences(self.rows[start : start + ROWS_PER_READ])

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def without_stimulus_documents(stream, origins: Optional[dict], log=print) -> "StreamSelection":
    """Every row of `stream` except those of the stimuli's source documents (corpus=stream)."""
    everything = np.arange(len(stream), dtype=np.int64)
    if origins is None:
        log(
            "parc.ngrams: the stimuli record no source documents (no .origins.json: not built by parc.stimuli "
            "from this data), so corpus=stream counts every sequence"
        )
        return StreamSelection(
            stream, everything, stream_fingerprint(stream, {"rows": "all", "excluded_documents": None})
        )
    if origins["stream"] != stream.content_hash:
        raise ParcError(
            f"the stimuli were drawn from another prepared stream ({origins['stream'][:12]}) than "
            f"{stream.dir} ({stream.content_hash[:12]}), so their source documents cannot be left out: "
            f"pass the data= the stimuli were built from, or rebuild them with python -m parc.stimuli"
        )
    spans = [np.arange(first, end, dtype=np.int64) for first, end in origins["rows"].values()]
    excluded = np.unique(np.concatenate(spans)) if spans else np.zeros(0, dtype=np.int64)
    log(
        f"parc.ngrams: leaving out {len(excluded)} sequences of the {len(origins['rows'])} documents the stimuli "
        f"were drawn from"
    )
    selection = {
        "rows": "all but the stimuli's documents",
        "excluded_rows": int(len(excluded)),
        "excluded_documents": sorted(int(d) for d in origins["rows"]),
    }
    return StreamSelection(stream, np.setdiff1d(everything, excluded), stream_fingerprint(stream, selection))


def whole_stream(overrides: List[str], origins: Optional[dict], log=print) -> StreamSelection:
    cfg = compose(overrides)
    stream = open_stream(cfg)
    return without_stimulus_documents(stream, origins, log)


def run_stream(
    refs,
    overrides: List[str],
    upto_step: Optional[int],
    corpus: str = "consumed",
    origins: Optional[dict] = None,
    log=print,
) -> StreamSelection:
    """The training sequences of the runs (they must share one data shard and order), found via `overrides`;
    with corpus=stream, their whole stream but the stimuli's documents."""
    from parc.study.sources.runs import run_config

    plans = {}
    for ref in refs:
        config = run_config(ref)
        if not config:
            raise ParcError(
                f"{ref.source} has no Parc training config, so its training stream is unknown: "
                f"pass data=<prepared data> without runs= to count a whole stream"
            )
        data, trainer = config["data"], config["trainer"]
        plans.setdefault(
            (json.dumps(data, sort_keys=True), trainer["global_batch_size"], trainer["max_steps"]), []
        ).append(ref.run)
    if len(plans) > 1:
        raise ParcError(
            f"the runs trained on different data ({'; '.join(', '.join(r) for r in plans.values())}): "
            f"run parc.ngrams once per data shard, with out= for each"
        )
    (data_json, batch, max_steps), _ = next(iter(plans.items()))
    local = [ref for ref in refs if not ref.is_hub]
    cfg = config_on_this_machine(
        {"data": json.loads(data_json), "trainer": {"global_batch_size": batch, "max_steps": max_steps}},
        local[0].source if local else None,
        overrides,
    )
    stream = open_stream(cfg)
    if corpus == "stream":
        return without_stimulus_documents(stream, origins, log)
    plan = BatchPlan.from_config(cfg, stream)
    last = max_steps if upto_step is None else upto_step
    if last > max_steps:
        raise ParcError(f"upto_step={last} is beyond the runs' {max_steps} steps: choose upto_step<={max_steps}")
    rows = np.concatenate([plan.indices(step) for step in range(1, last + 1)])
    return StreamSelection(stream, rows, stream_fingerprint(stream, {**plan.fingerprint(), "upto_step": last}))


def stream_fingerprint(stream, selection: dict) -> dict:
    return {
        "stream": stream.content_hash,
        "tokenizer_sha256": tokenizer_sha256(stream.tokenizer_dir),
        "vocab_size": int(stream.manifest["tokenizer"]["len"]),
        "selection": selection,
    }


def check_tokenizers(refs, tokenizer_sha: str, where: str) -> None:
    """Every run must tokenize as the counted stream does, or its word n-grams are other token sequences."""
    for ref in refs:
        path = None if ref.is_hub else ref.local_dir / "tokenizer.json"
        if path is not None and path.is_file() and sha256_file(path) != tokenizer_sha:
            raise ParcError(
                f"{ref.run}'s tokenizer ({path}) differs from the tokenizer of {where}: count n-grams "
                f"of that run's own data (runs=<run>, without index=)"
            )


def stimulus_words(stimuli) -> List[Tuple[int, List[str]]]:
    """(id, context words + target) of each stimulus; words are what the paper splits on spaces."""
    return [(s.id, [*s.context.split(), s.target]) for s in stimuli]


def run_ngrams(
    stimuli: str,
    overrides: List[str],
    runs: Optional[str] = None,
    out: Optional[Path] = None,
    index: Optional[Path] = None,
    upto_step: Optional[int] = None,
    word_end: bool = True,
    corpus: Optional[str] = None,
    vectors: bool = False,
    log=print,
) -> Path:
    """The whole `python -m parc.ngrams` command; every check (stimuli, runs, tokenizers) passes before anything is
    written. `overrides`: training overrides saying where the prepared data lives; `corpus` None: consumed with
    `runs`, stream without."""
    from parc.study.phases.stimuli import parse_stimuli_arg, read_origins, read_stimuli
    from parc.study.sources.runs import default_out, resolve_runs

    if index is not None and not (Path(index) / "parc_ngram_index.json").is_file():
        raise ParcError(f"index={index} is not an n-gram index: leave index= unset to build one")
    if upto_step is not None and upto_step < 1:
        raise ParcError(f"upto_step={upto_step}: steps are 1-based (the batch of update N); pass upto_step>=1")
    paths = parse_stimuli_arg(stimuli)
    if len(paths) > 1:
        raise ParcError("parc.ngrams takes one stimulus set: run it once per set (with out= for each)")
    stimulus_set = read_stimuli(paths[0])
    corpus = check_corpus(corpus, runs, upto_step)
    origins = read_origins(paths[0]) if corpus == "stream" else None
    refs = resolve_runs(runs) if runs else []
    if runs:
        out = Path(out or default_out(runs, "analysis"))
        selection = None if index else run_stream(refs, overrides, upto_step, corpus, origins, log)
    else:
        out = Path(out or paths[0].parent)
        selection = None if index else whole_stream(overrides, origins, log)
    if selection is not None:
        check_tokenizers(refs, selection.fingerprint["tokenizer_sha256"], f"the data at {selection.stream.dir}")
    if vectors and selection is None:
        raise ParcError("vectors=true trains on the counted text, which index= does not name: drop index= or vectors=")
    counted = open_index(selection, out, index, log)
    check_tokenizers(refs, counted.tokenizer_sha256, f"the n-gram index at {counted.directory}")
    if vectors:
        ensure_vectors(selection, out, log)
    return compute_ngrams(stimulus_words(stimulus_set), paths[0], out, counted, word_end, log)


def check_corpus(corpus: Optional[str], runs: Optional[str], upto_step: Optional[int]) -> str:
    corpus = corpus or ("consumed" if runs else "stream")
    if corpus not in CORPORA:
        raise ParcError(
            f"corpus={corpus!r}: use corpus=consumed (the runs' training batches) or corpus=stream "
            f"(the whole stream but the stimuli's documents)"
        )
    if corpus == "consumed" and not runs:
        raise ParcError("corpus=consumed counts the batches the runs trained on: pass runs=<runs>, or corpus=stream")
    if corpus == "stream" and upto_step is not None:
        raise ParcError(
            "upto_step= selects training batches, which corpus=stream does not count: drop upto_step= "
            "or use corpus=consumed"
        )
    return corpus


def ensure_vectors(selection: StreamSelection, out: Path, log=print) -> Path:
    """`<out>/fasttext.bin` trained on the selection's text (skipped when its record matches)."""
    from parc.data.tokenizer import load_saved_tokenizer
    from parc.study.phases.context_similarity import TRAIN_SETTINGS, text_words, train_vectors

    path, sidecar = out / VECTORS, out / (VECTORS + ".json")
    record = {"selection": selection.key(), "settings": TRAIN_SETTINGS}
    if path.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()) == record:
        log(f"parc.ngrams: {path} is up to date")
        return path
    tokenizer = load_saved_tokenizer(selection.stream.tokenizer_dir)
    sentences = [
        words
        for batch in selection.batches()
        for words in text_words(tokenizer.batch_decode(batch.tolist(), skip_special_tokens=True))
    ]
    out.mkdir(parents=True, exist_ok=True)
    train_vectors(sentences, path, log=log)
    atomic_write_json(sidecar, record)
    return path


def coverage(stimuli: List[Tuple[int, List[str]]], count, orders=ORDERS) -> Dict[str, float]:
    """Per order n: the fraction of stimuli (with at least n words) whose n-gram ending at the target occurs."""
    out = {}
    for order in orders:
        long_enough = [words for _, words in stimuli if len(words) >= order]
        seen = sum(count(tuple(words[-order:])) > 0 for words in long_enough)
        out[str(order)] = seen / len(long_enough) if long_enough else float("nan")
    return out


def open_index(selection: Optional[StreamSelection], out: Path, index_dir: Optional[Path], log) -> NgramIndex:
    if index_dir:
        return NgramIndex(Path(index_dir))
    directory = out / "ngram_index" / selection.key()
    index = open_or_none(directory)
    if index is None:
        log(f"parc.ngrams: building the index of {len(selection.rows)} training sequences at {directory}")
        index = build_index(
            directory,
            selection.batches(),
            selection.fingerprint,
            selection.stream.tokenizer_dir,
            selection.fingerprint["vocab_size"],
            log=log,
        )
    return index


def compute_ngrams(
    stimuli: List[Tuple[int, List[str]]], stimuli_path: Path, out: Path, index: NgramIndex, word_end: bool, log=print
) -> Path:
    """Write `<out>/ngrams.parquet` (+ `ngrams.json`); a no-op when the recorded inputs already match."""
    import pandas as pd

    record = {
        "stimuli": str(Path(stimuli_path).resolve()),
        "stimuli_sha256": sha256_file(stimuli_path),
        "word_end": word_end,
        "orders": list(ORDERS),
        "alpha": ALPHA,
        "index": {k: index.meta.get(k) for k in ("stream", "tokenizer_sha256", "selection", "num_tokens")},
    }
    table, sidecar = out / "ngrams.parquet", out / "ngrams.json"
    if (
        table.is_file()
        and sidecar.is_file()
        and {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "coverage"} == record
    ):
        log(f"parc.ngrams: {table} is up to date")
        return table
    counter = WordCounter(index, index.tokenizer(), word_end=word_end)
    started = time.perf_counter()
    frame = pd.DataFrame(ngram_rows(stimuli, counter), columns=["stimulus_id", "order", "logprob"])
    seen = coverage(stimuli, counter.count)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(table, lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write_json(sidecar, {**record, "coverage": seen})
    counts = counter.count.cache_info().misses
    log(
        f"parc.ngrams: {len(stimuli)} stimuli x {len(ORDERS)} orders in {seconds:.1f} s "
        f"({counts} index counts, {counts / max(seconds, 1e-9):.0f}/s) -> {table}; stimulus n-grams seen at least "
        f"once: " + ", ".join(f"{order}-gram {100 * value:.0f} %" for order, value in seen.items())
    )
    return table
