"""The paper's optional context-similarity predictor, from fastText vectors (`phases.vectors=<file.vec>`).

For each stimulus: the cosine similarity between the target word's vector and the mean vector of its context
words. Reads the fastText text format (`cc.en.300.vec`: a header line "<words> <dim>", then "word v1 .. vd"),
keeping only the vectors of words the stimuli use, so a multi-GB file is streamed once. Words without a
vector are left out of the context mean; a stimulus without a target or any context vector gets the mean
similarity (0 once z-scored), so it neither helps nor hurts the fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np

from parc.errors import ParcError


def read_vectors(path: Path, words: Iterable[str]) -> Dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ParcError(f"phases.vectors={path} does not exist: pass a fastText .vec file, or leave it unset "
                        f"to skip the context-similarity predictor")
    wanted, found = set(words), {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().split()
        if len(header) != 2 or not all(part.isdigit() for part in header):
            raise ParcError(f"{path} is not a fastText .vec file (its first line should be '<words> <dim>'): "
                            f"pass the text format, e.g. cc.en.300.vec")
        dim = int(header[1])
        for line in handle:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word in wanted and word not in found:
                values = np.array(rest.split(), dtype=float)
                if len(values) == dim:
                    found[word] = values
    return found


def context_similarities(stimuli: List[Tuple[int, List[str]]], vectors: Dict[str, np.ndarray]):
    """(stimulus_id, context_similarity) for each stimulus (id, context words + target)."""
    import pandas as pd

    values = []
    for _, words in stimuli:
        context = [vectors[w] for w in words[:-1] if w in vectors]
        target = vectors.get(words[-1])
        if target is None or not context:
            values.append(np.nan)
            continue
        mean = np.mean(context, axis=0)
        denominator = np.linalg.norm(mean) * np.linalg.norm(target)
        values.append(float(mean @ target / denominator) if denominator > 0 else np.nan)
    values = np.array(values)
    values[np.isnan(values)] = np.nanmean(values) if np.isfinite(values).any() else 0.0
    return pd.DataFrame({"stimulus_id": [sid for sid, _ in stimuli], "context_similarity": values})
