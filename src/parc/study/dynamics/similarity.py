"""Representation similarity between checkpoints: per-layer debiased linear CKA and effective rank of the
hidden states (`output_hidden_states=True`) on a fixed set of held-out sequences.

The sequences are the ones parc.evaluate's held-out loss uses (`parc.study.evaluations.heldout`: right
after the highest training shard of the runs, or `eval.heldout.data_dir=` / `eval.heldout.start=`), the
first `sequences` of them; every token position is an example, or `max_tokens` positions drawn once with a
fixed seed, the same for every checkpoint. Checkpoints load through `ModelCache` (local runs, grid roots,
`hub:` revisions of any HF causal LM: Pythia, Mamba, RWKV or foreign), one at a time; their hidden states
are kept (float32, tokens x width per layer) only while needed: each run's last checkpoint (for `steps`)
and the checkpoints of the step being scored.

Pairs (`pairs=`): `steps` (every checkpoint of a run against the run's last), `seeds` (every two runs of one
architecture and size at each common step), `archs` (runs of different architectures at each common step,
same seed where they share one). `steps` and `seeds` compare layer i with layer i, `archs` every layer
with every layer (`layers=all` asks for that everywhere). Rows: a, b, layer_a, layer_b, metric (`cka`, or
`effective_rank` with a = b), value, then kind and the two checkpoints' arch / seed / step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from parc.errors import ParcError
from parc.study.dynamics.cka import Moments, effective_rank
from parc.study.sources.refs import CheckpointRef

PAIR_KINDS = ("steps", "seeds", "archs")
TOKEN_SEED = 0  # which positions max_tokens keeps: fixed, so every checkpoint sees the same tokens
COLUMNS = [
    "a",
    "b",
    "layer_a",
    "layer_b",
    "metric",
    "value",
    "kind",
    "arch_a",
    "seed_a",
    "step_a",
    "arch_b",
    "seed_b",
    "step_b",
]


@dataclass
class States:
    ref: CheckpointRef
    layers: List[np.ndarray]  # per hidden-states entry (embeddings first): tokens x width
    seconds: float  # forward passes + copying out
    flops: float = 0.0  # forward FLOPs, 2 x parameters x tokens (the usual estimate; attention excluded)
    self_hsic: Dict[int, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """run@revision; a bare checkpoint directory is named by its parent (its own name is the revision)."""
        run = self.ref.run
        if not self.ref.is_hub and run == self.ref.revision:
            run = Path(self.ref.source).parent.name
        return f"{run}@{self.ref.revision}"

    def hsic(self, layer: int) -> float:
        if layer not in self.self_hsic:
            x = self.layers[layer]
            self.self_hsic[layer] = Moments.of(x, x).hsic()
        return self.self_hsic[layer]


def held_out(refs: Sequence[CheckpointRef], overrides: List[str], sequences: int):
    """parc.evaluate's held-out loss for these runs, restricted to its first `sequences` sequences: `.stream`,
    `.indices` (the token ids are `held_out_ids(...)`), `.check_tokenizer(directory, ref)`."""
    from parc.config import compose
    from parc.study.evaluations.heldout import HeldoutLoss
    from parc.study.evaluations.settings import register_evaluate_schema, validate_eval

    register_evaluate_schema()
    cfg = compose([*overrides, f"eval.heldout.sequences={sequences}"], config_name="evaluate")
    validate_eval(cfg.eval)
    return HeldoutLoss(cfg.eval, list(refs))  # finds the stream, refuses overlaps and other tokenizers (local)


def held_out_ids(heldout) -> np.ndarray:
    return heldout.stream.sequences(heldout.indices).astype(np.int64)


def token_positions(n_sequences: int, seq_len: int, max_tokens: int) -> np.ndarray:
    """Flat (sequence x position) indices of the tokens scored; all of them, or a fixed sample."""
    total = n_sequences * seq_len
    if max_tokens <= 0 or max_tokens >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(TOKEN_SEED).choice(total, size=max_tokens, replace=False))


def hidden_states(model, ids: np.ndarray, positions: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """Every hidden-states entry of the model on `ids`, flattened to tokens and restricted to `positions`."""
    import torch

    chunks: List[List[np.ndarray]] = []
    seq_len = ids.shape[1]
    with torch.no_grad():
        for begin in range(0, len(ids), batch_size):
            batch = torch.from_numpy(ids[begin : begin + batch_size])
            out = model(input_ids=batch, output_hidden_states=True, use_cache=False)
            if not out.hidden_states:
                raise ParcError(f"{type(model).__name__} returns no hidden states (output_hidden_states=True)")
            flat = np.arange(begin * seq_len, (begin + len(batch)) * seq_len)
            keep = np.isin(flat, positions)
            chunks.append([h.float().reshape(-1, h.shape[-1]).numpy()[keep] for h in out.hidden_states])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def loader(heldout, max_tokens: int, batch_size: int, cache, echo=print) -> Callable[[CheckpointRef], States]:
    """ref -> its hidden states on the held-out tokens (the checkpoint loaded for the forward passes only)."""
    ids = held_out_ids(heldout)
    positions = token_positions(ids.shape[0], ids.shape[1], max_tokens)

    def load(ref: CheckpointRef) -> States:
        began = time.perf_counter()
        with cache.open(ref) as loaded:
            if ref.is_hub:  # a Hub model's tokenizer is known once it is downloaded
                heldout.check_tokenizer(loaded.directory, ref)
            layers = hidden_states(loaded.model, ids, positions, batch_size)
            flops = 2.0 * sum(p.numel() for p in loaded.model.parameters()) * ids.size
        state = States(ref, layers, time.perf_counter() - began, flops)
        echo(
            f"parc.dynamics similarity: {state.label}: {len(layers)} layers x {len(positions)} tokens "
            f"[{state.seconds:.2f} s, {flops:.3g} FLOPs]"
        )
        return state

    return load


def choose_pairs(states: Sequence[States], kinds: Sequence[str]) -> List[Tuple[str, States, States]]:
    def run_key(s: States):
        return (s.ref.arch, s.ref.size)

    pairs = []
    if "steps" in kinds:
        by_run: Dict[str, List[States]] = {}
        for s in states:
            by_run.setdefault(s.ref.source, []).append(s)
        for members in by_run.values():
            members = sorted(members, key=lambda s: s.ref.step)
            pairs += [("steps", s, members[-1]) for s in members[:-1]]
    by_step: Dict[int, List[States]] = {}
    for s in states:
        by_step.setdefault(s.ref.step, []).append(s)
    for step, members in sorted(by_step.items()):
        members = sorted(
            members, key=lambda s: (s.ref.arch, s.ref.size, s.ref.seed if s.ref.seed is not None else -1, s.ref.source)
        )
        for a, b in combinations(members, 2):
            if "seeds" in kinds and run_key(a) == run_key(b) and a.ref.source != b.ref.source:
                pairs.append(("seeds", a, b))
        if "archs" in kinds:
            cross = [(a, b) for a, b in combinations(members, 2) if a.ref.arch != b.ref.arch]
            same_seed = [(a, b) for a, b in cross if a.ref.seed == b.ref.seed]
            pairs += [("archs", a, b) for a, b in (same_seed or cross)]
    return pairs


def cka_rows(kind: str, a: States, b: States, all_layers: bool) -> List[dict]:
    if len(a.layers[0]) != len(b.layers[0]):
        raise ParcError(f"{a.label} and {b.label} were scored on different tokens: use one eval.heldout setting")
    layer_pairs = (
        [(i, j) for i in range(len(a.layers)) for j in range(len(b.layers))]
        if all_layers
        else [(i, i) for i in range(min(len(a.layers), len(b.layers)))]
    )
    rows = []
    for i, j in layer_pairs:
        denominator = a.hsic(i) * b.hsic(j)
        value = Moments.of(a.layers[i], b.layers[j]).hsic() / np.sqrt(denominator) if denominator > 0 else np.nan
        rows.append(row(kind, a, b, i, j, "cka", float(value)))
    return rows


def row(kind: str, a: States, b: States, i: int, j: int, metric: str, value: float) -> dict:
    return {
        "a": a.label,
        "b": b.label,
        "layer_a": i,
        "layer_b": j,
        "metric": metric,
        "value": value,
        "kind": kind,
        "arch_a": a.ref.arch,
        "seed_a": a.ref.seed,
        "step_a": a.ref.step,
        "arch_b": b.ref.arch,
        "seed_b": b.ref.seed,
        "step_b": b.ref.step,
    }


def check_kinds(kinds: Sequence[str]) -> None:
    bad = [k for k in kinds if k not in PAIR_KINDS]
    if bad or not kinds:
        raise ParcError(f"pairs={','.join(kinds)}: choose among {', '.join(PAIR_KINDS)} (comma-separated)")


def score(
    refs: Sequence[CheckpointRef],
    load: Callable[[CheckpointRef], States],
    kinds: Sequence[str],
    all_layers: bool = False,
):
    """The similarity table of `refs`, holding at most two checkpoints' states per run: each run's last
    (for `steps`) and the checkpoints of the step being scored, loaded step by step."""
    import pandas as pd

    check_kinds(kinds)
    finals: Dict[str, States] = {}
    if "steps" in kinds:
        last: Dict[str, CheckpointRef] = {}
        for ref in refs:
            if ref.source not in last or ref.step > last[ref.source].step:
                last[ref.source] = ref
        finals = {source: load(ref) for source, ref in sorted(last.items())}
    by_step: Dict[int, List[CheckpointRef]] = {}
    for ref in refs:
        by_step.setdefault(ref.step, []).append(ref)
    rows: List[dict] = []
    same_step = [k for k in kinds if k != "steps"]
    for step, members in sorted(by_step.items()):
        states = [finals[r.source] if r.source in finals and finals[r.source].ref == r else load(r) for r in members]
        rows += [
            row("checkpoint", s, s, i, i, "effective_rank", effective_rank(x))
            for s in states
            for i, x in enumerate(s.layers)
        ]
        for kind, a, b in choose_pairs(states, same_step):
            rows += cka_rows(kind, a, b, all_layers or kind == "archs")
        for s in states if "steps" in kinds else ():
            if finals[s.ref.source] is not s:
                rows += cka_rows("steps", s, finals[s.ref.source], all_layers)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["metric", "kind", "a", "b", "layer_a", "layer_b"], kind="mergesort").reset_index(
        drop=True
    )


def similarity_table(states: Sequence[States], kinds: Sequence[str], all_layers: bool = False):
    """The table of states already in memory (same pairs as `score`)."""
    by_ref = {s.ref: s for s in states}
    return score([s.ref for s in states], by_ref.__getitem__, kinds, all_layers)
