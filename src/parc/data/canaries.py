"""Canaries (`data.canaries.*`): seeded random sequences planted in the data plan, and their never-inserted twins.

Each canary is one packed row: a prompt (random, or the given token ids shared by all) plus a random secret filling
the rest of the row; tokens are drawn uniformly from the vocabulary without the EOS token (whose labels the loss
ignores), by `numpy.random.default_rng([seed, 0, canary id])`, so a canary's tokens never depend on how many there
are. Canaries come in groups: for each step window [start, end) (1-based steps) and each repetition count r,
`per_group` canaries are planted r times each. Ids run window by window, then repetition by repetition; the
`references` never-inserted canaries take the ids after them (the exposure reference set).

Placement overwrites whole rows: for window w, the copies take training positions of the window drawn without
replacement by `default_rng([seed, 1, w])` among those no earlier window took, in that order; position p is row
p % B of step p // B + 1 (B = global batch). Steps, tokens and the LR schedule stay the base run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from parc.errors import ParcError


@dataclass(frozen=True)
class CanarySpec:
    seed: int
    per_group: int
    repeats: Tuple[int, ...]
    windows: Tuple[Tuple[int, int], ...]
    references: int
    prompt: Optional[Tuple[int, ...]]
    prompt_tokens: int

    @classmethod
    def from_config(cls, canaries) -> Optional["CanarySpec"]:
        """The spec of `cfg.data.canaries`, or None when its seed is null (no canaries)."""
        if canaries is None or canaries.get("seed") is None:
            return None
        windows = []
        for window in canaries.windows:
            if len(window) != 2:
                raise ParcError(
                    f"data.canaries.windows: {list(window)} is not a window; write each as [start,end) "
                    "steps, e.g. data.canaries.windows=[[200,700],[1400,1900]]"
                )
            windows.append((int(window[0]), int(window[1])))
        prompt = canaries.get("prompt")
        return cls(
            int(canaries.seed),
            int(canaries.per_group),
            tuple(int(r) for r in canaries.repeats),
            tuple(windows),
            int(canaries.references),
            None if prompt is None else tuple(int(t) for t in prompt),
            int(canaries.prompt_tokens),
        )

    @property
    def groups(self) -> List[Tuple[int, int]]:
        """(window index, repetition count) of every group, in id order."""
        return [(w, r) for w in range(len(self.windows)) for r in self.repeats]

    @property
    def inserted(self) -> int:
        return len(self.groups) * self.per_group

    def group_of(self, canary: int) -> Tuple[int, int]:
        return self.groups[canary // self.per_group]

    def record(self) -> dict:
        return {
            "seed": self.seed,
            "per_group": self.per_group,
            "repeats": list(self.repeats),
            "windows": [list(w) for w in self.windows],
            "references": self.references,
            "prompt": None if self.prompt is None else list(self.prompt),
            "prompt_tokens": self.prompt_tokens,
        }

    def describe(self, max_steps: int, global_batch_size: int) -> str:
        """One line for the dry run: what is planted where, and how much of the data it displaces."""
        rows = self.per_group * sum(self.repeats) * len(self.windows)
        windows = " ".join(f"[{start}, {end})" for start, end in self.windows)
        return (
            f"{self.inserted} canaries (seed {self.seed}: {self.per_group} per group x repeats "
            f"{','.join(str(r) for r in self.repeats)} x windows {windows}) overwrite {rows} of "
            f"{max_steps * global_batch_size} rows; {self.references} never-inserted references"
        )

    def check(self, max_steps: int, global_batch_size: int, seq_len: int, vocab_size: int) -> None:
        """Refuse a spec that cannot be placed in this run, naming the fix (one line each)."""
        if self.per_group < 1 or self.references < 0 or any(r < 1 for r in self.repeats):
            raise ParcError("data.canaries: per_group and every repeats count must be >= 1, references >= 0")
        prompt_len = len(self.prompt) if self.prompt is not None else self.prompt_tokens
        if not 0 <= prompt_len < seq_len:
            raise ParcError(
                f"data.canaries: a prompt of {prompt_len} tokens leaves no secret in a row of "
                f"{seq_len} tokens; use a prompt shorter than data.seq_len"
            )
        if self.prompt is not None and any(not 0 <= t < vocab_size for t in self.prompt):
            raise ParcError(f"data.canaries.prompt: token ids must lie in 0..{vocab_size - 1} (data.vocab_size)")
        taken = np.zeros(max_steps * global_batch_size, dtype=bool)
        for w, (start, end) in enumerate(self.windows):
            if not 1 <= start < end <= max_steps + 1:
                raise ParcError(
                    f"data.canaries.windows: window [{start}, {end}) lies beyond the run (steps 1.."
                    f"{max_steps}, trainer.max_steps): give 1 <= start < end <= {max_steps + 1}"
                )
            copies = self.per_group * sum(self.repeats)
            rows = (end - start) * global_batch_size
            if copies > rows:
                where = (
                    f"more canary rows in step {start} ({copies}) than its batch of {global_batch_size}"
                    if end - start == 1
                    else f"window [{start}, {end}) needs {copies} canary rows but holds {end - start} steps x "
                    f"{global_batch_size} = {rows} rows"
                )
                raise ParcError(f"data.canaries: {where}; widen the window, or lower per_group or repeats")
            taken[(start - 1) * global_batch_size : (end - 1) * global_batch_size] = True
        total = self.per_group * sum(self.repeats) * len(self.windows)
        if total > taken.sum():
            raise ParcError(
                f"data.canaries: more canaries ({total} rows) than rows in their windows "
                f"({int(taken.sum())}, windows overlap); use disjoint or wider windows"
            )


def canary_tokens(spec: CanarySpec, ids, seq_len: int, vocab_size: int, eos_token_id: Optional[int]) -> np.ndarray:
    """The rows of canaries `ids` (inserted or reference), int64 [len(ids), seq_len]."""
    allowed = np.array([t for t in range(vocab_size) if t != eos_token_id], dtype=np.int64)
    rows = np.empty((len(ids), seq_len), dtype=np.int64)
    for i, canary in enumerate(ids):
        rng = np.random.default_rng([spec.seed, 0, int(canary)])
        if spec.prompt is None:
            rows[i] = allowed[rng.integers(0, len(allowed), seq_len)]
        else:
            rows[i, : len(spec.prompt)] = spec.prompt
            rows[i, len(spec.prompt) :] = allowed[rng.integers(0, len(allowed), seq_len - len(spec.prompt))]
    return rows


def placements(spec: CanarySpec, global_batch_size: int) -> np.ndarray:
    """(canary id, training position) of every planted copy, int64 [copies, 2], sorted by position."""
    end_all = max((end for _, end in spec.windows), default=1)
    taken, out = np.zeros((end_all - 1) * global_batch_size, dtype=bool), []
    for w, (start, end) in enumerate(spec.windows):
        copies = [c for c in range(spec.inserted) if spec.group_of(c)[0] == w for _ in range(spec.group_of(c)[1])]
        window = np.arange((start - 1) * global_batch_size, (end - 1) * global_batch_size, dtype=np.int64)
        free = window[~taken[window]]
        slots = np.random.default_rng([spec.seed, 1, w]).choice(free, size=len(copies), replace=False)
        taken[slots] = True
        out += list(zip(copies, slots.tolist()))
    table = np.array(out, dtype=np.int64).reshape(-1, 2)
    return table[np.argsort(table[:, 1], kind="stable")]
