"""Building a NaWoCo-style stimulus set from text the runs never train on, with the Parc paper's rules.

The paper (dataset_construction/construct_dataset{1,2,3}.py) took web sentences and kept those that:
- split from a document by line, then by ".", have more than 5 whitespace-separated words, start with an
  upper-case character (tested on the fragment as split, so a sentence after ". " - which starts with the
  space - is not taken, as in the paper), and whose first word is letters/apostrophes and every later word
  only lower-case letters/apostrophes;
- after de-duplication, get a random word at index >= 4 as the target, the sentence cut after it;
- are not found verbatim in the training corpus (the paper asked an infini-gram index of OpenWebText);
- are split at random into train / val / test, duplicates across splits removed (the paper: 100k / 50k /
  50k; defaults here are 1/100 of that, `train= val= test=` change them). The toxicity filter of the paper
  (a RoBERTa classifier) is not applied.

Held-out text. The paper drew sentences from another corpus (FineWeb-edu); here they come from the training
corpus itself (`data=` composes exactly as for training), from the documents that no run of the grid reads:
a run reads the slice of the packed stream of its shard (`trainer.global_batch_size x trainer.max_steps`
sequences; `shards=` lists the grid's shards, default `data.shard`). Each document is re-tokenized with the
stream's tokenizer to find which sequences it became (its first one is checked against the stream); a
document none of whose sequences lies in a read slice is held out, every other one is training text, and
the verbatim check runs against the text of those. For the bundled demo (`experiment=demo`: shard 0 = the
first 3200 of 14504 sequences) that holds out 33 of the 42 plays. `data=demo` without an experiment means
the demo grid's settings (experiment=demo), since no run can read the demo data with the default trainer.

Deterministic: the same config, sizes and `sample_seed` give byte-identical files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from parc.errors import ParcError
from parc.study.phases.stimuli import Stimulus, write_stimuli

PAPER_SEED = 1001010  # np.random.seed of construct_dataset2.py
DEFAULT_SIZES = {"train": 1000, "val": 500, "test": 500}  # the paper's 100k / 50k / 50k, scaled by 1/100
MIN_WORDS = 6  # "more than 5 words"
FIRST_TARGET_INDEX = 4
DOCUMENTS_PER_CALL = 4  # small, so that documents past the read slices are never tokenized
FIRST_WORD = re.compile(r"[A-Za-z'\u2019]*$")
LATER_WORD = re.compile(r"[a-z'\u2019]*$")


@dataclass
class BuildReport:
    paths: List[Path]
    counts: dict
    summary: str


def candidate_sentences(text: str) -> Iterator[str]:
    """The sentences of one document that pass the paper's filter, words joined by single spaces."""
    for line in text.split("\n"):
        for fragment in line.split("."):
            words = fragment.split()
            if (
                len(words) >= MIN_WORDS
                and fragment[0].isupper()
                and FIRST_WORD.match(words[0])
                and all(LATER_WORD.match(word) for word in words[1:])
            ):
                yield " ".join(words)


def cut_at_random_word(sentence: str, rng: np.random.Generator) -> Tuple[str, str]:
    """(context, target): a uniformly chosen word at index >= 4 becomes the target; the rest is dropped."""
    words = sentence.split(" ")
    index = int(rng.integers(FIRST_TARGET_INDEX, len(words)))
    return " ".join(words[:index]), words[index]


def walk_documents(cfg, stream, tokenize) -> Iterator[Tuple[int, str, Optional[Tuple[int, int]]]]:
    """(index, text, token span) of every document of the configured corpus in stream order; the span
    (start, end) is the stream token range the document became, None for a document `tokenize(position,
    index)` says needs no tokenizing (the walk stops tracking positions at the first such document)."""
    from parc.data.prepare import Corpus, batch_encoder
    from parc.data.tokenizer import load_saved_tokenizer

    d = cfg.data
    encode = batch_encoder(load_saved_tokenizer(stream.tokenizer_dir))
    corpus = Corpus(d, stream.dir)
    position, index, tracking = 0, 0, True  # position: stream token offset where the next document starts
    for texts in corpus.batches(0, corpus.total, DOCUMENTS_PER_CALL):
        tracking = tracking and tokenize(position, index)
        token_lists = encode(texts) if tracking else [None] * len(texts)
        for text, ids in zip(texts, token_lists):
            if ids is None:
                yield index, text, None
            else:
                span = (len(ids) // d.seq_len * d.seq_len) if d.packing == "parc" else len(ids) + 1
                if span and d.packing == "parc":
                    _check_alignment(stream, ids, position // d.seq_len, d.seq_len)
                yield index, text, (position, position + span)
                position += span
            index += 1


def split_documents(cfg, shards: Sequence[int]) -> Tuple[List[Tuple[int, str]], List[str]]:
    """(held-out (index, text) documents, training texts) of the configured corpus; see the module docstring."""
    from parc.data.prepare import ensure_prepared
    from parc.data.stream import BatchPlan

    stream = ensure_prepared(cfg)
    t, d = cfg.trainer, cfg.data
    slices = []
    for shard in shards:  # BatchPlan refuses a shard beyond the data, with the fix
        held = {"holdout": int(d.get("holdout") or 0), "holdout_seed": int(d.get("holdout_seed") or 0)}
        plan = BatchPlan(stream, shard, None, t.global_batch_size, t.max_steps, **held)
        slices.append((plan.first * d.seq_len, (plan.first + plan.slice_length) * d.seq_len))
    read_until = max(end for _, end in slices)
    held_out, training = [], []
    # Documents past everything any run reads need no tokenizing.
    for index, text, span in walk_documents(cfg, stream, lambda position, _: position < read_until):
        read = (
            span is not None and span[1] > span[0] and any(span[0] < end and span[1] > begin for begin, end in slices)
        )
        if read:
            training.append(text)
        else:
            held_out.append((index, text))
    return held_out, training


def document_rows(cfg, stream, documents: Sequence[int]) -> Dict[int, List[int]]:
    """The stream rows [first, end) holding each document's tokens (its first and last rows may be shared
    with its neighbours under data.packing=concat)."""
    wanted, last, rows = set(documents), max(documents, default=-1), {}
    seq_len, total = cfg.data.seq_len, len(stream)
    for index, _, span in walk_documents(cfg, stream, lambda _, first_index: first_index <= last):
        if index > last:
            break
        if index in wanted:
            first = span[0] // seq_len
            end = span[1] // seq_len if cfg.data.packing == "parc" else min(-(-span[1] // seq_len), total)
            rows[index] = [int(first), int(max(end, first))]
    return rows


def not_in_text(phrases: Sequence[str], texts: Sequence[str]) -> List[bool]:
    """For each phrase (single-spaced words, at least 5), whether it is NOT a substring of the texts joined
    with their whitespace collapsed (the paper's verbatim filter), without a full-text search per phrase: a
    phrase that occurs has its 2nd-4th words as whole consecutive words of the text (only its first and
    last words may be cut from longer ones), so only phrases whose inner trigram the text holds are searched."""
    joined = " ".join(" ".join(text.split()) for text in texts)
    words = joined.split(" ")
    inner = set(zip(words, words[1:], words[2:]))
    verdicts = []
    for phrase in phrases:
        key = tuple(phrase.split(" ")[1:4])
        if len(key) < 3:
            raise ValueError(f"not_in_text needs phrases of at least 5 words, got {phrase!r}")
        verdicts.append(key not in inner or phrase not in joined)
    return verdicts


def _check_alignment(stream, ids: List[int], row: int, seq_len: int) -> None:
    if row >= len(stream) or not np.array_equal(stream.sequences([row])[0], np.asarray(ids[:seq_len])):
        raise ParcError(
            f"the documents of the data config no longer match the prepared stream at {stream.dir} "
            f"(sequence {row} differs): prepare the data again, or pass the data= your runs trained on"
        )


def build_stimuli(
    cfg, out: Path, sizes: dict, sample_seed: int = PAPER_SEED, shards: Sequence[int] = (), progress=print
) -> BuildReport:
    """Build the set and write `out` (.stims) and its split sidecar (.tsv); nothing is written on error."""
    out = Path(out)
    if out.suffix != ".stims":
        raise ParcError(f"out={out}: the stimuli file must end in .stims (its splits go beside it in .tsv)")
    bad = {name: size for name, size in sizes.items() if size < 0}
    if bad:
        raise ParcError(f"split sizes must not be negative: {bad}")
    held_out, training = split_documents(cfg, list(shards) or [cfg.data.shard])
    progress(f"stimuli: {len(held_out)} held-out documents, {len(training)} training documents")
    origins: Dict[str, List[int]] = {}  # sentence -> every held-out document it occurs in
    for index, text in held_out:
        for sentence in candidate_sentences(text):
            documents = origins.setdefault(sentence, [])
            if not documents or documents[-1] != index:
                documents.append(index)
    sentences = list(origins)
    rng = np.random.default_rng(sample_seed)
    cut: Dict[Tuple[str, str], List[int]] = {}  # (context, target) -> the documents of its sentences
    for sentence in sentences:
        cut.setdefault(cut_at_random_word(sentence, rng), []).extend(origins[sentence])
    absent = not_in_text([f"{context} {target}" for context, target in cut], training)
    kept = [pair for pair, keep in zip(cut, absent) if keep]
    wanted = sum(sizes.values())
    if len(kept) < wanted:
        raise ParcError(
            f"only {len(kept)} stimuli can be built from the held-out documents ({len(sentences)} "
            f"sentences pass the filter, {len(cut) - len(kept)} occur in the training text), "
            f"{wanted} were asked for: lower {' '.join(f'{k}=' for k in sizes)} or hold out more data"
        )
    order = rng.permutation(len(kept))[:wanted]
    stimuli, documents, start = [], [], 0
    for split, size in sizes.items():
        for index in order[start : start + size]:
            context, target = kept[index]
            stimuli.append(Stimulus(len(stimuli), context, target, f"{context} {target}", split))
            documents.append(sorted(set(cut[(context, target)])))
        start += size
    from parc.data.prepare import ensure_prepared

    stream = ensure_prepared(cfg)
    rows = document_rows(cfg, stream, sorted({d for ds in documents for d in ds}))
    paths = write_stimuli(
        out,
        stimuli,
        origins={
            "stream": stream.content_hash,
            "seq_len": int(cfg.data.seq_len),
            "documents": documents,
            "rows": {str(d): span for d, span in sorted(rows.items())},
        },
    )
    counts = {"candidates": len(sentences), "in_training_text": len(cut) - len(kept), **sizes}
    summary = (
        f"wrote {paths[0]}, {paths[1]} and {paths[2].name}: "
        + ", ".join(f"{size} {split}" for split, size in sizes.items())
        + f" from {len(held_out)} held-out documents ({len(sentences)} sentences pass the paper's filter, "
        f"{counts['in_training_text']} removed as verbatim in the training text)"
    )
    return BuildReport(paths, counts, summary)
