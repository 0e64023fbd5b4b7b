"""Scoring stimulus sets at every checkpoint of `runs=`: the paper's TSVs and the tidy `surprisal` table.

For each checkpoint (parc.study.sources.runs) and each stimulus set, one unit of work writes, atomically:
- `<out>/<set>.surprisal.<model>___<revision>.causal.output`, the paper's TSV (columns FullSentence,
  Sentence, TargetWords, Surprisal, NumTokens; one row per stimulus in file order; `<model>` is the Hub
  repo id, or the run's label for a local run, with `/` -> `__` and `.` -> `_` as the paper named it);
- then its part of `<out>/surprisal.parquet` (parc.study.results.TidyTable): stimuli (the set name),
  stimulus_id, split, surprisal (nats), surprisal_bits, num_tokens, and the checkpoint's identity columns
  (arch, size, seed, shard, data_seed, step, tokens, source, revision, commit).
A unit whose part exists (same set content, same weights) is skipped, so a rerun after a kill redoes only
the unit in progress, and `publish()` rebuilds surprisal.parquet/.csv from the parts. Every stimulus file
is read, and every checkpoint resolved, before anything is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from parc.study.phases.stimuli import Stimulus, read_stimuli, set_name
from parc.study.phases.surprisal import (
    DEFAULT_TOKEN_BUDGET,
    NATS_PER_BIT,
    Encoded,
    StimulusEncoder,
    check_lengths,
    score,
)

TABLE = "surprisal"
SORT_BY = ["stimuli", "arch", "size", "seed", "shard", "data_seed", "step", "source", "revision", "stimulus_id"]
TSV_HEADER = ["FullSentence", "Sentence", "TargetWords", "Surprisal", "NumTokens"]


@dataclass(frozen=True)
class StimulusSet:
    name: str
    path: Path
    digest: str  # sha256 of the file (and its split sidecar): results are tied to the content
    stimuli: List[Stimulus]


def load_sets(paths: Sequence[Path]) -> List[StimulusSet]:
    sets = []
    for path in paths:
        stimuli = read_stimuli(path)
        digest = hashlib.sha256(Path(path).read_bytes())
        sidecar = Path(path).with_suffix(".tsv")
        if sidecar.is_file() and sidecar != Path(path):
            digest.update(sidecar.read_bytes())
        sets.append(StimulusSet(set_name(path), Path(path), digest.hexdigest()[:16], stimuli))
    return sets


def model_label(ref) -> str:
    """The paper's `model_name_cleaned`, from the Hub repo id or the local run's label."""
    name = ref.repo_id if ref.is_hub else ref.run
    return name.replace("/", "__").replace(".", "_")


def tsv_name(stimulus_set: StimulusSet, ref) -> str:
    return f"{stimulus_set.name}.surprisal.{model_label(ref)}___{ref.revision}.causal.output"


def _escape(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def paper_tsv(stimuli: Sequence[Stimulus], encoded: Sequence[Encoded], surprisal: np.ndarray) -> str:
    """The TSV calculate_surprisal.py wrote (values formatted as Python prints floats and ints)."""
    lines = ["\t".join(TSV_HEADER)]
    for stimulus, item, value in zip(stimuli, encoded, surprisal):
        lines.append(
            "\t".join(
                [
                    _escape(stimulus.sentence),
                    _escape(item.sentence),
                    item.target_text,
                    repr(float(value)),
                    str(len(item.target)),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def unit_key(stimulus_set: StimulusSet, ref) -> str:
    return f"{stimulus_set.name}#{stimulus_set.digest}|{ref.key()}"


def rows(stimulus_set: StimulusSet, ref, encoded: Sequence[Encoded], surprisal: np.ndarray):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "stimuli": stimulus_set.name,
            "stimulus_id": np.arange(len(encoded), dtype=np.int64),
            "split": [s.split for s in stimulus_set.stimuli],
            "surprisal": surprisal,
            "surprisal_bits": surprisal / NATS_PER_BIT,
            "num_tokens": np.array([len(item.target) for item in encoded], dtype=np.int64),
        }
    )
    for column, value in ref.columns().items():
        frame[column] = value
    return frame


def score_checkpoints(
    sets: Sequence[StimulusSet],
    refs: Sequence,
    out: Path,
    open_checkpoint: Callable,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    progress: Optional[Callable[[str], None]] = print,
):
    """Score every set at every checkpoint not already done; publish the table. Returns the table's paths."""
    from parc.store.fileio import atomic_write
    from parc.study.results import TidyTable

    table = TidyTable(out, TABLE, SORT_BY)
    todo = [
        (ref, [s for s in sets if not (table.done(unit_key(s, ref)) and (out / tsv_name(s, ref)).is_file())])
        for ref in refs
    ]
    todo = [(ref, pending) for ref, pending in todo if pending]
    if progress:
        progress(f"surprisal: {len(refs)} checkpoints x {len(sets)} stimulus set(s); {len(todo)} checkpoints to score")
    for number, (ref, pending) in enumerate(todo, 1):
        with open_checkpoint(ref) as loaded:
            encoder = StimulusEncoder(loaded.tokenizer)
            for stimulus_set in pending:
                encoded = encoder.encode_all(stimulus_set.stimuli)
                check_lengths(encoded, loaded.max_length, f"{stimulus_set.path}:")
                surprisal = score(loaded.model, encoded, token_budget)
                out.mkdir(parents=True, exist_ok=True)
                text = paper_tsv(stimulus_set.stimuli, encoded, surprisal)
                atomic_write(out / tsv_name(stimulus_set, ref), lambda tmp: tmp.write_text(text, encoding="utf-8"))
                table.write(unit_key(stimulus_set, ref), rows(stimulus_set, ref, encoded, surprisal))
        if progress:
            progress(
                f"surprisal: [{number}/{len(todo)}] {ref.run} {ref.revision}: scored "
                f"{sum(len(s.stimuli) for s in pending)} stimuli"
            )
    return table.publish()


def pick_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        from parc.errors import ParcError

        raise ParcError("device=cuda but no CUDA device is visible: use device=cpu (or auto)")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def run_surprisal(
    stimuli: str,
    runs: str,
    steps: Optional[Sequence[int]] = None,
    out: Optional[Path] = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    device: str = "auto",
    progress=print,
):
    """`python -m parc.surprisal`: check every input first, then score what is not done yet."""
    import contextlib

    from parc.study.phases.stimuli import parse_stimuli_arg
    from parc.study.sources.model_cache import ModelCache
    from parc.study.sources.runs import default_out, resolve_runs

    sets = load_sets(parse_stimuli_arg(stimuli))
    refs = resolve_runs(runs, steps)
    target = pick_device(device)
    cache = ModelCache()

    @contextlib.contextmanager
    def open_on_device(ref):
        with cache.open(ref) as loaded:
            loaded.model.to(target)
            yield loaded

    return score_checkpoints(
        sets, refs, Path(out) if out else default_out(runs, "analysis"), open_on_device, token_budget, progress
    )
