"""The Parc paper's context-similarity predictors, from fastText vectors with subwords.

For each stimulus (context words w_1..w_n, then the target t), with v(.) a word's fastText vector:

    context_similarity           = 1 - cosine_distance(v(t), mean_i v(w_i))
    context_similarity_weighted  = 1 - cosine_distance(v(t), sum_i (i / sum_j j) v(w_i))

i counts the context words from the start, so the last word (nearest the target) weighs most. Vectors come
from `vectors=` (parc.phases): a fastText `.bin` (read with gensim's `load_facebook_vectors`, so every word gets a
vector from its character n-grams, as the paper's cc.en.300.bin), a text `.vec` (streamed once, keeping the
stimuli's words; a word without a vector is left out of the mean), or, offline, vectors trained by
`train_vectors` on the training text with gensim's FastText (one worker, fixed seed: the same text gives the
same vectors) and saved in Facebook's `.bin` format. A stimulus without a target or any context vector gets
the mean similarity (0 once z-scored), so it neither helps nor hurts the fit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np

from parc.errors import ParcError

COLUMNS = ("context_similarity", "context_similarity_weighted")
WORD = re.compile(r"[A-Za-z'\u2019]+")  # the words stimuli are made of (parc.study.phases.stimulus_sets's filter)
TRAIN_SETTINGS = {"vector_size": 100, "window": 5, "min_count": 2, "epochs": 5, "sg": 0, "seed": 0}


def gensim_fasttext():
    try:
        from gensim.models import fasttext
    except ImportError:
        raise ParcError("fastText vectors need gensim: pip install 'parc[similarity]'") from None
    return fasttext


def read_vectors(path: Path, words: Iterable[str]) -> Dict[str, np.ndarray]:
    """The vectors of `words` from a fastText `.bin` (every word, via subwords) or `.vec` (those listed)."""
    path = Path(path)
    if not path.is_file():
        raise ParcError(
            f"vectors={path} does not exist: pass a fastText .bin or .vec file, or leave it "
            f"unset to skip the context-similarity predictors"
        )
    if path.suffix == ".bin":
        try:
            vectors = gensim_fasttext().load_facebook_vectors(str(path))
        except (ValueError, OSError, NotImplementedError, AssertionError) as exc:
            raise ParcError(
                f"{path} is not a fastText .bin model ({' '.join(str(exc).split())[:120]}): pass "
                f"Facebook's binary format, e.g. cc.en.300.bin"
            ) from None
        return {word: np.asarray(vectors[word], dtype=float) for word in set(words)}
    wanted, found = set(words), {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().split()
        if len(header) != 2 or not all(part.isdigit() for part in header):
            raise ParcError(
                f"{path} is not a fastText .vec file (its first line should be '<words> <dim>'): "
                f"pass the text format, e.g. cc.en.300.vec, or a .bin"
            )
        dim = int(header[1])
        for line in handle:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word in wanted and word not in found:
                values = np.array(rest.split(), dtype=float)
                if len(values) == dim:
                    found[word] = values
    return found


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else np.nan


def context_similarities(stimuli: List[Tuple[int, List[str]]], vectors: Dict[str, np.ndarray]):
    """(stimulus_id, context_similarity, context_similarity_weighted) for each stimulus (id, context + target)."""
    import pandas as pd

    values = {column: [] for column in COLUMNS}
    for _, words in stimuli:
        context = [(i, vectors[w]) for i, w in enumerate(words[:-1], 1) if w in vectors]
        target = vectors.get(words[-1])
        if target is None or not context:
            for column in COLUMNS:
                values[column].append(np.nan)
            continue
        positions = np.array([i for i, _ in context], dtype=float)
        matrix = np.stack([v for _, v in context])
        values["context_similarity"].append(cosine_similarity(matrix.mean(axis=0), target))
        values["context_similarity_weighted"].append(cosine_similarity(positions / positions.sum() @ matrix, target))
    frame = {"stimulus_id": [sid for sid, _ in stimuli]}
    for column in COLUMNS:
        column_values = np.array(values[column], dtype=float)
        column_values[np.isnan(column_values)] = np.nanmean(column_values) if np.isfinite(column_values).any() else 0.0
        frame[column] = column_values
    return pd.DataFrame(frame)


def text_words(texts: Iterable[str]) -> Iterable[List[str]]:
    for text in texts:
        words = WORD.findall(text)
        if words:
            yield words


def train_vectors(sentences: List[List[str]], path: Path, settings: Dict = TRAIN_SETTINGS, log=print) -> Path:
    """Train fastText (gensim, one worker, fixed seed) on `sentences` and save it as Facebook's `.bin` at `path`."""
    import time

    from parc.store.fileio import atomic_write

    fasttext = gensim_fasttext()
    if not sentences:
        raise ParcError(
            "no training text to learn fastText vectors from: check the data, or pass vectors= to parc.phases"
        )
    started = time.perf_counter()
    model = fasttext.FastText(sentences=sentences, workers=1, **settings)
    atomic_write(Path(path), lambda tmp: fasttext.save_facebook_model(model, str(tmp)))
    log(
        f"parc.ngrams: fastText vectors ({settings['vector_size']} dims, {len(model.wv)} words) trained on "
        f"{sum(map(len, sentences))} words in {time.perf_counter() - started:.0f} s -> {path}"
    )
    return Path(path)
