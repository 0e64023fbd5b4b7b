"""Changes of a run's data plan: canaries (parc.data.canaries) and an intervention from step k (`intervention=`).

`BatchPlan` asks `PlanEdits` three things: the order of the run's training positions (`position_map`: new
position q reads the base plan's position position_map[q]; reshuffle and block swap), stream rows replaced by
others (`replace`: drop), and rows overwritten after reading (`overwrite`: canaries, then the token map).
Steps up to k are never touched by an intervention, so a branch from checkpoint-k sees its parent's batches there.

- `reshuffle`: positions of steps k+1..N in the order `default_rng([seed, k]).permutation`;
- `block_swap` [a, b) <-> [c, d) (k < a < b <= c < d <= N + 1): the two blocks of steps trade places and the
  steps between them keep their order, shifted when the blocks differ in length; the same multiset either way;
- `drop`: each listed stream row (consumed after step k) is replaced in place by the next unused row after the
  run's slice of the stream (the i-th listed row by row first + S + i, S = the slice's length, its data.holdout
  rows included, so a substitute is never a held-out row);
- `token_map`: [[from, to], ...] applied to every token of the batches after step k (inputs and labels alike);
- `canaries`: the change is `data.canaries`, whose windows must start after step k.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from parc.data.canaries import CanarySpec, canary_tokens, placements
from parc.data.hashing import batch_hash
from parc.errors import ParcError

NAMES = ("none", "reshuffle", "block_swap", "drop", "token_map", "canaries")


@dataclass(frozen=True)
class Intervention:
    name: str
    step: int
    seed: int = 0
    blocks: Tuple[int, ...] = ()
    rows: Tuple[int, ...] = ()
    token_map: Tuple[Tuple[int, int], ...] = ()

    @classmethod
    def from_config(cls, section) -> Optional["Intervention"]:
        """`cfg.intervention` as an Intervention, or None for intervention=none."""
        if section is None or section.get("name", "none") == "none":
            return None
        if section.name not in NAMES:
            raise ParcError(f"intervention={section.name!r} is not one of {', '.join(NAMES)}")
        if section.get("step") is None:
            raise ParcError(
                f"intervention={section.name} needs the step it starts after: branch_from=<checkpoint-k> "
                "(an exact branch), or intervention.step=k for a run from scratch"
            )
        pairs = []
        for pair in section.token_map:
            if len(pair) != 2:
                raise ParcError(f"intervention.token_map: {list(pair)} is not a [from, to] pair of token ids")
            pairs.append((int(pair[0]), int(pair[1])))
        return cls(
            section.name,
            int(section.step),
            int(section.seed),
            tuple(int(b) for b in section.blocks),
            tuple(int(r) for r in section.rows),
            tuple(pairs),
        )

    def record(self) -> dict:
        """What changes the data (stored in the fingerprint, checkpoints and metrics): only this kind's keys."""
        keys = {
            "reshuffle": ("seed",),
            "block_swap": ("blocks",),
            "drop": ("rows",),
            "token_map": ("token_map",),
            "canaries": (),
        }[self.name]
        values = {
            "seed": self.seed,
            "blocks": list(self.blocks),
            "rows": list(self.rows),
            "token_map": [list(p) for p in self.token_map],
        }
        return {"name": self.name, "step": self.step, **{k: values[k] for k in keys}}


class PlanEdits:
    """The changes one BatchPlan applies; built by `PlanEdits.build`, None when there are none."""

    def __init__(
        self,
        plan,
        canaries: Optional[CanarySpec],
        intervention: Optional[Intervention],
        vocab_size: int,
        eos_token_id: Optional[int],
    ):
        self.canaries, self.intervention = canaries, intervention
        self.vocab_size, self.eos_token_id = vocab_size, eos_token_id
        self.position_map: Optional[np.ndarray] = None
        self.replacements: Dict[int, int] = {}
        self.lut: Optional[np.ndarray] = None
        B, N = plan.global_batch_size, plan.max_steps
        if intervention is not None:
            self._intervene(plan, intervention, vocab_size)
        self.copies: Dict[int, list] = {}  # step -> [(row, canary id)]
        self._manifest: Optional[list] = None
        self.tokens: Dict[int, np.ndarray] = {}
        if canaries is not None:
            canaries.check(N, B, plan.stream.seq_len, vocab_size)
            table = placements(canaries, B)
            rows = canary_tokens(canaries, range(canaries.inserted), plan.stream.seq_len, vocab_size, eos_token_id)
            self.tokens = {c: rows[c] for c in range(canaries.inserted)}
            for canary, position in table.tolist():
                self.copies.setdefault(position // B + 1, []).append((position % B, canary))

    @classmethod
    def build(cls, plan, canaries, intervention, vocab_size: int, eos_token_id: Optional[int]) -> Optional["PlanEdits"]:
        if canaries is None and intervention is None:
            return None
        return cls(plan, canaries, intervention, vocab_size, eos_token_id)

    def _intervene(self, plan, change: Intervention, vocab_size: int) -> None:
        N, k = plan.max_steps, change.step
        if not 0 <= k < N:
            raise ParcError(f"intervention.step={k} must lie in 0..{N - 1}: the steps after it change")
        if change.name == "reshuffle":
            B, S = plan.global_batch_size, plan.sequences_per_shard
            tail = k * B + np.random.default_rng([change.seed, k]).permutation(S - k * B)
            self.position_map = np.concatenate([np.arange(k * B, dtype=np.int64), tail])
        elif change.name == "block_swap":
            self._block_swap(plan, change)
        elif change.name == "drop":
            self._drop(plan, change)
        elif change.name == "token_map":
            self._token_map(change, vocab_size)
        elif change.name == "canaries" and (self.canaries is None or any(s <= k for s, _ in self.canaries.windows)):
            raise ParcError(
                f"intervention=canaries plants data.canaries from step {k}: set data.canaries.seed and "
                f"windows that start after step {k}"
            )

    def _block_swap(self, plan, change: Intervention) -> None:
        B, N, S, k = plan.global_batch_size, plan.max_steps, plan.sequences_per_shard, change.step
        blocks = list(change.blocks)
        if len(blocks) != 4 or not k < blocks[0] < blocks[1] <= blocks[2] < blocks[3] <= N + 1:
            raise ParcError(
                f"intervention.blocks={blocks}: give [a,b,c,d] with {k} < a < b <= c < d "
                f"<= {N + 1} to swap steps [a,b) and [c,d) after step {k}"
            )
        a, b, c, d = ((s - 1) * B for s in blocks)
        self.position_map = np.concatenate(
            [np.arange(0, a), np.arange(c, d), np.arange(b, c), np.arange(a, b), np.arange(d, S)]
        ).astype(np.int64)

    def _token_map(self, change: Intervention, vocab_size: int) -> None:
        if not change.token_map:
            raise ParcError("intervention=token_map needs intervention.token_map=[[from,to],...] (token ids)")
        self.lut = np.arange(vocab_size, dtype=np.int64)
        for src, dst in change.token_map:
            if not (0 <= src < vocab_size and 0 <= dst < vocab_size):
                raise ParcError(f"intervention.token_map: [{src}, {dst}] has a token id outside 0..{vocab_size - 1}")
            self.lut[src] = dst

    def _drop(self, plan, change: Intervention) -> None:
        B, S, k = plan.global_batch_size, plan.slice_length, change.step
        if not change.rows:
            raise ParcError("intervention=drop needs intervention.rows=[...] (stream rows, as parc.batch lists them)")
        spare = len(plan.stream) - (plan.first + S)
        if len(change.rows) > spare:
            raise ParcError(
                f"intervention=drop: {len(change.rows)} rows to replace but only {spare} stream rows "
                "follow the run's slice; drop fewer rows"
            )
        order = plan.base_within()
        where = np.full(S, -1, dtype=np.int64)  # within-slice index -> training position (-1: held out)
        where[order] = np.arange(len(order))
        for i, row in enumerate(change.rows):
            within = row - plan.first
            if not 0 <= within < S or where[within] < k * B:
                raise ParcError(
                    f"intervention.rows: stream row {row} is not consumed after step {k} by this run "
                    f"(its slice is rows {plan.first}..{plan.first + S - 1})"
                )
            self.replacements[row] = plan.first + S + i

    def replace(self, indices: np.ndarray) -> np.ndarray:
        if not self.replacements:
            return indices
        return np.array([self.replacements.get(int(i), int(i)) for i in indices], dtype=np.int64)

    def overwrite(self, step: int, rows: np.ndarray, lo: int) -> np.ndarray:
        """Rows lo.. of step `step`'s batch as read from the stream, with canaries planted and tokens mapped."""
        for row, canary in self.copies.get(step, ()):
            if lo <= row < lo + len(rows):
                rows[row - lo] = self.tokens[canary]
        if self.lut is not None and step > self.intervention.step:
            rows = self.lut[rows]
        return rows

    def canary_rows(self, step: int) -> Dict[int, int]:
        """{row: canary id} of step `step`'s batch."""
        return dict(self.copies.get(step, ()))

    def manifest(self, plan) -> list:
        """One entry per planted copy: canary id, step, row, token hash, the displaced natural stream row."""
        if self._manifest is not None:
            return self._manifest
        out = []
        for step in sorted(self.copies):
            natural = plan.indices(step)
            for row, canary in sorted(self.copies[step]):
                out.append(
                    {
                        "canary": canary,
                        "step": step,
                        "row": row,
                        "token_hash": batch_hash(self.tokens[canary][None]),
                        "displaced": int(natural[row]),
                    }
                )
        self._manifest = out
        return out

    def fingerprint(self, plan, upto: Optional[int] = None) -> dict:
        """What these edits add to the data fingerprint; with `upto`=k, only what steps 1..k see."""
        out = {}
        if self.canaries is not None:
            entries = [e for e in self.manifest(plan) if upto is None or e["step"] <= upto]
            if upto is None or entries:
                digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
                out["canaries"] = {
                    **({"spec": self.canaries.record()} if upto is None else {}),
                    "manifest_sha256": digest,
                }
        if self.intervention is not None and (upto is None or self.intervention.step < upto):
            out["intervention"] = self.intervention.record()
        return out

    def canary_record(self, plan) -> dict:
        """canaries.json: the spec, every planted copy (the manifest), and the tokens of every canary by id
        (inserted ones first, then the never-inserted references), with each one's group."""
        spec = self.canaries
        ids = range(spec.inserted + spec.references)
        rows = canary_tokens(spec, ids, plan.stream.seq_len, self.vocab_size, self.eos_token_id)
        canaries = [
            {
                "canary": c,
                "kind": "inserted" if c < spec.inserted else "reference",
                **(dict(zip(("window", "repeats"), spec.group_of(c))) if c < spec.inserted else {}),
                "token_hash": batch_hash(rows[c][None]),
                "tokens": rows[c].tolist(),
            }
            for c in ids
        ]
        return {"spec": spec.record(), "manifest": self.manifest(plan), "canaries": canaries}
