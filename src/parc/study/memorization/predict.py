"""Predictability of memorization (Biderman et al. 2023), across checkpoints, seeds and architectures.

Target: "memorized (score32 == 1) at the end", the last checkpoint of a run (architecture x seed). Predictors:
the same run at each earlier checkpoint (kind `checkpoint`), another seed of the same architecture at its end
(`seed`), another architecture with the same seed (`arch`) or another seed too (`arch+seed`), all on the same
units (same data order, so the same example ids). precision = TP / predicted, recall = TP / memorized at the
end (the definitions the note recomputes from Pythia's confusion matrices), F1 their harmonic mean, n the units
both scored.
"""

from __future__ import annotations

import numpy as np

from parc.errors import ParcError
from parc.study.memorization.panel import RUN, family

COLUMNS = ["arch", "seed", "target_step", "predictor_arch", "predictor_seed", "predictor_step", "kind"]
COLUMNS += ["precision", "recall", "f1", "n", "tp", "predicted", "memorized"]


def scores(predicted, actual) -> dict:
    """precision, recall, F1 and the counts of two boolean vectors (NaN where a denominator is zero)."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    tp, p, a = int((predicted & actual).sum()), int(predicted.sum()), int(actual.sum())
    precision = tp / p if p else np.nan
    recall = tp / a if a else np.nan
    f1 = 2 * tp / (p + a) if p + a else np.nan
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n": len(actual),
        "tp": tp,
        "predicted": p,
        "memorized": a,
    }


def kind_of(target: tuple, predictor: tuple) -> str:
    if target == predictor:
        return "checkpoint"
    if target[0] == predictor[0]:
        return "seed"
    return "arch" if target[1] == predictor[1] else "arch+seed"


def predict_table(frame, units: str = "train"):
    """One row per target run x predictor (run, checkpoint): COLUMNS."""
    import pandas as pd

    if "score32" not in frame.columns:
        raise ParcError("the panel has no score32 column: predictability is about sequences memorized 32/32")
    rows = family(frame, units)
    rows = rows[rows["treated"]]
    memorized = rows.assign(m=rows["score32"].to_numpy(float) >= 1.0).pivot_table(
        index="example_id", columns=[*RUN, "step"], values="m", aggfunc="max"
    )
    last = {run: max(s for a, b, s in memorized.columns if (a, b) == run) for run in {c[:2] for c in memorized.columns}}
    out = []
    for target in sorted(last, key=str):
        actual = memorized[(*target, last[target])]
        for column in memorized.columns:
            predictor, step = column[:2], column[2]
            if predictor != target and step != last[predictor] or column == (*target, last[target]):
                continue  # other runs predict from their end; a run's own end is the target
            both = actual.notna() & memorized[column].notna()
            out.append(
                dict(zip(COLUMNS, [*target, last[target], *predictor, step, kind_of(target, predictor)]))
                | scores(memorized[column][both].astype(bool), actual[both].astype(bool))
            )
    return pd.DataFrame(out, columns=COLUMNS)
