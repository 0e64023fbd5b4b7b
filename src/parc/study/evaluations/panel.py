"""Panel mode of `eval=memorization` (`eval.panel.enabled=true`; presets `eval=panel`, `eval=canaries`): one fixed
set of units scored at every checkpoint, before and after they are trained, for causal memorization estimates.

Units of one run (`example_id`, `unit_kind`):
- `train` (example_id = the stream row): for every checkpoint interval (c_{i-1}, c_i] of the run's checkpoint
  schedule (its `checkpoint` group, parc.store.steps), `eval.panel.per_interval` training positions of the
  interval drawn without replacement by `numpy.random.default_rng([eval.panel.seed, c_i])` in the *base* plan
  (the data_seed order without canaries or intervention), each one's stream row kept. Its `treat_step` is the step
  at which the run's own plan (canaries and intervention applied: `BatchPlan.edits`) consumes that row; a row the
  run never trains (displaced by a canary, dropped by intervention=drop) is left out. So every run of a grid with
  the same data settings scores the same rows, and a block-swap branch scores its parent's rows at their new steps.
- `control` (example_id = the stream row): `eval.panel.controls` rows drawn by `default_rng([eval.panel.seed, 0])`
  from the held-out rows (`data.holdout`, parc.data.stream) every evaluated run shares, a never-trained slice of the
  same stream as its training rows; treat_step null. Runs without a holdout (or whose holdouts differ: then one
  stderr line says so) draw them from the rows after every evaluated run's slice and after the rows
  intervention=drop substitutes, which no step of any of them consumes: the stream's tail, which in mini_parc is
  Shakespeare while training is mostly the Bible.
- `canary` / `reference` (example_id = -1 - canary id), from the run's canaries.json: every inserted canary with
  `treat_step` / `last_step` = its first / last insertion step, `repeats`, `window`; the never-inserted references
  with nulls.

Outcomes, from ONE teacher-forced forward per unit and checkpoint over its first P + C tokens (P = eval.prompt_len,
C = eval.continuation_len; a canary's forward covers its whole row, for the secret): `nll`, the mean next-token
NLL (nats) of tokens 1..P+C-1; `accuracy`, the fraction of those positions whose argmax is the next token;
`score32`, Pythia's score: the fraction of the C greedy tokens after the prompt equal to the true ones (1.0 =
extracted C/C). With `eval.panel.exposure=true` (eval=canaries), canaries and references also get `secret_nll`, the
mean NLL of the secret (the tokens after the canary's prompt, each given the prompt and the secret before it),
`exposure` = log2 |R| - log2 rank among the candidates R = the references plus the unit itself (rank 1: lower
than every reference, ties counted ahead of it, so a secret below all 1,023 references scores 10.0), and
`exposure_fit` = -log2 skewnorm.cdf(secret_nll) under `scipy.stats.skewnorm.fit(reference secret_nll)`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from parc.errors import ParcError
from parc.store.fileio import read_json

CANARY_FILE = "canaries.json"  # as parc.training.trainer writes it
KINDS = ("train", "control", "canary", "reference")
OUTCOMES = ("nll", "accuracy", "score32")


@dataclass
class Units:
    """The panel of one run: ids, kinds, timing columns and the tokens each forward reads."""

    example_id: np.ndarray
    unit_kind: np.ndarray
    treat_step: np.ndarray  # float, NaN where never trained (written as nullable Int64)
    last_step: np.ndarray
    repeats: np.ndarray
    window: np.ndarray
    tokens: List[np.ndarray] = field(default_factory=list)  # [natural rows [n, P+C], canary rows [m, seq_len]]

    def frame(self):
        import pandas as pd

        out = pd.DataFrame({"example_id": self.example_id, "unit_kind": self.unit_kind})
        for name in ("treat_step", "last_step", "repeats", "window"):
            out[name] = pd.array([None if math.isnan(v) else int(v) for v in getattr(self, name)], dtype="Int64")
        return out


def interval_positions(checkpoints: List[int], batch_size: int, per_interval: int, seed: int) -> np.ndarray:
    """Training positions sampled per checkpoint interval (c_{i-1}, c_i] (see the module docstring), sorted."""
    out = []
    for lo, hi in zip(checkpoints[:-1], checkpoints[1:]):
        positions = np.arange(lo * batch_size, hi * batch_size, dtype=np.int64)
        take = min(per_interval, len(positions))
        out.append(np.random.default_rng([seed, hi]).choice(positions, size=take, replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def run_position(plan, base_rows: np.ndarray) -> np.ndarray:
    """The run's training position of each stream row (-1 where the run never trains it)."""
    within = base_rows - plan.first
    order = plan.base_within()
    where = np.full(plan.slice_length, -1, dtype=np.int64)
    where[order] = np.arange(len(order))  # within-slice index -> base position
    base_pos = where[within]
    edits = plan.edits
    if edits is None:
        return base_pos
    pos = base_pos
    if edits.position_map is not None:
        inverse = np.empty_like(edits.position_map)
        inverse[edits.position_map] = np.arange(len(edits.position_map))
        pos = inverse[base_pos]
    B = plan.global_batch_size
    trained = np.array(
        [
            int(r) not in edits.replacements and (p % B) not in edits.canary_rows(int(p // B + 1))
            for r, p in zip(base_rows, pos)
        ],
        dtype=bool,
    )
    return np.where(trained, pos, -1)


def natural_units(data, config, per_interval: int, seed: int, controls: np.ndarray, width: int) -> Units:
    """Train units (stratified by the run's checkpoint intervals) and the shared control rows."""
    from omegaconf import OmegaConf

    from parc.data.stream import BatchPlan
    from parc.store.steps import checkpoint_steps

    plan = data.plan
    cfg = OmegaConf.create(config)
    held = {"holdout": plan.holdout, "holdout_seed": plan.holdout_seed}
    base = BatchPlan(plan.stream, plan.shard, plan.data_seed, plan.global_batch_size, plan.max_steps, **held)
    checkpoints = checkpoint_steps(cfg.checkpoint, plan.max_steps)
    positions = interval_positions(checkpoints, plan.global_batch_size, per_interval, seed)
    rows = plan.first + base.base_within()[positions]
    pos = run_position(plan, rows)
    rows, steps = rows[pos >= 0], pos[pos >= 0] // plan.global_batch_size + 1
    ids = np.concatenate([rows, controls])
    treat = np.concatenate([steps.astype(float), np.full(len(controls), np.nan)])
    nan = np.full(len(ids), np.nan)
    kind = np.array(["train"] * len(rows) + ["control"] * len(controls), dtype=object)
    tokens = plan.stream.sequences(ids)[:, :width] if len(ids) else np.zeros((0, width), dtype=np.int64)
    return Units(ids, kind, treat, treat.copy(), nan, nan.copy(), [tokens])


def canary_units(run_dir: Path, spec_present: bool) -> Optional[Units]:
    """Inserted canaries and references from the run's canaries.json (None when the run has no canaries)."""
    path = Path(run_dir) / CANARY_FILE
    if not path.is_file():
        if spec_present:
            raise ParcError(f"{run_dir} has data.canaries but no {CANARY_FILE}: the run did not finish writing it")
        return None
    record = read_json(path)
    steps: Dict[int, List[int]] = {}
    for entry in record["manifest"]:
        steps.setdefault(int(entry["canary"]), []).append(int(entry["step"]))
    canaries = record["canaries"]
    ids = np.array([-1 - int(c["canary"]) for c in canaries], dtype=np.int64)
    kind = np.array(["canary" if c["kind"] == "inserted" else "reference" for c in canaries], dtype=object)

    def column(value) -> np.ndarray:
        return np.array([float(value(c)) if c["kind"] == "inserted" else np.nan for c in canaries])

    return Units(
        ids,
        kind,
        column(lambda c: min(steps[c["canary"]])),
        column(lambda c: max(steps[c["canary"]])),
        column(lambda c: c["repeats"]),
        column(lambda c: c["window"]),
        [np.array([c["tokens"] for c in canaries], dtype=np.int64)],
    )


def control_rows(datas, controls: int, seed: int) -> Tuple[np.ndarray, str]:
    """`controls` stream rows no evaluated run trains on, and where they come from: "holdout" (the held-out rows
    the runs share) or "tail" (after every training slice and drop substitute); see the module docstring."""
    if controls == 0 or not datas:
        return np.zeros(0, dtype=np.int64), "tail"
    pool = shared_holdout(datas)
    if pool is not None:
        if len(pool) < controls:
            raise ParcError(
                f"eval.panel.controls={controls}: the evaluated runs hold out only {len(pool)} rows (data.holdout) "
                "that none of them trains; lower eval.panel.controls"
            )
        return np.sort(np.random.default_rng([seed, 0]).choice(pool, controls, replace=False)), "holdout"
    start = max(d.plan.first + d.plan.slice_length + len(substitutes(d.plan)) for d in datas)
    stream = datas[0].plan.stream
    if start + controls > len(stream):
        raise ParcError(
            f"eval.panel.controls={controls}: only {max(len(stream) - start, 0)} stream rows of {stream.dir} lie "
            f"after the runs' training data (from row {start}); lower eval.panel.controls"
        )
    return np.sort(
        np.random.default_rng([seed, 0]).choice(np.arange(start, len(stream)), controls, replace=False)
    ), "tail"


def substitutes(plan) -> List[int]:
    """The stream rows intervention=drop trains in place of the dropped ones (outside the run's slice)."""
    return list(plan.edits.replacements.values()) if plan.edits is not None else []


def shared_holdout(datas) -> Optional[np.ndarray]:
    """The held-out rows (data.holdout) of the evaluated runs when they all hold out the same rows, less any drop
    substitute; None when none has a holdout, or (with one stderr line) when one has none or they differ."""
    held = [d.plan.held_out for d in datas]
    if not any(len(h) for h in held):
        return None
    if not all(len(h) and np.array_equal(h, held[0]) for h in held):
        print(
            "parc.evaluate: the evaluated runs' data.holdout rows differ (or one has none): the panel's controls "
            "come from the stream's tail after every run's slice instead",
            file=sys.stderr,
        )
        return None
    return np.setdiff1d(held[0], [r for d in datas for r in substitutes(d.plan)])


def score_batch(model, ids: torch.Tensor, prompt_len: int, count: int, secret_from: Optional[int]) -> dict:
    """The outcomes of one batch of units [B, T >= P + C] from one teacher-forced forward (module docstring)."""
    from parc.study.evaluations.greedy import complete_greedy, first_true

    width = prompt_len + count
    logits = model(input_ids=ids, use_cache=False).logits.float()  # no cache: Parc's fast forward for Mamba
    nll_pos = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    argmax = logits[:, :-1].argmax(dim=-1)
    targets = ids[:, prompt_len:width]
    greedy = argmax[:, prompt_len - 1 : width - 1].clone()
    first = first_true(greedy != targets, count)
    # A unit whose teacher-forced argmax equals all C targets needs no decoding: greedy's token j is the argmax
    # after the prompt and greedy's tokens < j, which are then the true ones, i.e. exactly this forward's argmax.
    greedy, _ = complete_greedy(model, ids[:, :prompt_len], greedy, first)
    out = {
        "nll": nll_pos[:, : width - 1].double().mean(dim=1),
        "accuracy": (argmax[:, : width - 1] == ids[:, 1:width]).double().mean(dim=1),
        "score32": (greedy == targets).double().mean(dim=1),
        "decoded": (first < count).sum(),
    }
    if secret_from is not None:
        out["secret_nll"] = nll_pos[:, secret_from - 1 :].double().mean(dim=1)
    return out


@torch.inference_mode()
def score_tokens(model, tokens: np.ndarray, prompt_len: int, count: int, batch_size: int, secret_from=None) -> dict:
    """`score_batch` over every row of `tokens`, as numpy arrays (plus `decoded`: units greedy had to decode)."""
    device = next(model.parameters()).device
    parts: Dict[str, list] = {}
    for begin in range(0, len(tokens), batch_size):
        ids = torch.as_tensor(tokens[begin : begin + batch_size], dtype=torch.long, device=device)
        for name, value in score_batch(model, ids, prompt_len, count, secret_from).items():
            parts.setdefault(name, []).append(value.cpu().numpy())
    out = {name: np.concatenate([np.atleast_1d(v) for v in values]) for name, values in parts.items()}
    out["decoded"] = int(out.get("decoded", np.zeros(0)).sum())
    for name in (*OUTCOMES, "secret_nll"):
        out.setdefault(name, np.zeros(0))
    return out


def exposure(secret_nll: np.ndarray, is_reference: np.ndarray) -> tuple:
    """(exposure by rank, skew-normal exposure) of every unit against the references (module docstring)."""
    from scipy.stats import skewnorm

    refs = np.sort(secret_nll[is_reference])
    ahead = np.searchsorted(refs, secret_nll, side="right")  # references with an NLL <= the unit's
    rank = np.where(is_reference, ahead, ahead + 1)  # a reference is one of the references it is ranked with
    candidates = np.where(is_reference, len(refs), len(refs) + 1)
    ranked = np.log2(candidates) - np.log2(rank)
    fitted = -skewnorm.logcdf(secret_nll, *skewnorm.fit(refs)) / math.log(2)
    return ranked, fitted


class PanelMode:
    """The panel of every evaluated run (built once) and its scoring at one checkpoint."""

    def __init__(self, eval_cfg, runs: Dict[str, object], configs: Dict[str, dict]):
        panel = eval_cfg.panel
        self.seed, self.per_interval, self.controls = int(panel.seed), int(panel.per_interval), int(panel.controls)
        self.with_exposure = bool(panel.exposure)
        self.prompt_len, self.count = int(eval_cfg.prompt_len), int(eval_cfg.continuation_len)
        self.batch_size = int(eval_cfg.batch_size)
        shared, self.controls_from = control_rows(list(runs.values()), self.controls, self.seed)
        width = self.prompt_len + self.count
        self.units: Dict[str, Units] = {}
        self.secret_from: Dict[str, Optional[int]] = {}
        for source, data in runs.items():
            natural = natural_units(data, configs[source], self.per_interval, self.seed, shared, width)
            spec = data.plan.edits.canaries if data.plan.edits is not None else None
            planted = canary_units(Path(source), spec is not None)
            if self.with_exposure and (planted is None or (planted.unit_kind == "reference").sum() < 2):
                raise ParcError(
                    f"eval.panel.exposure ranks canaries among never-inserted references, and {source} has "
                    f"{'no canaries' if planted is None else 'fewer than 2 references'}: train it with "
                    f"data.canaries (data.canaries.references >= 2), or use eval=panel"
                )
            self.units[source] = merge(natural, planted)
            prompt = None if spec is None else (len(spec.prompt) if spec.prompt is not None else spec.prompt_tokens)
            self.secret_from[source] = prompt

    def fingerprint(self) -> dict:
        return {
            "panel_seed": self.seed,
            "per_interval": self.per_interval,
            "controls": self.controls,
            "exposure": self.with_exposure,
            # Only with held-out controls, so the fingerprint of a panel of runs without a holdout is what it was.
            **({"controls_from": "holdout"} if self.controls_from == "holdout" else {}),
        }

    def score(self, model, source: str):
        """(per-unit frame, the number of units greedy had to decode) of one checkpoint."""
        units = self.units[source]
        parts = []
        for i, tokens in enumerate(units.tokens):  # natural rows [n, P+C], then canary rows [m, seq_len]
            secret = self.secret_from[source] if self.with_exposure and i == 1 else None
            parts.append(score_tokens(model, tokens, self.prompt_len, self.count, self.batch_size, secret))
        frame = units.frame()
        for name in OUTCOMES:
            frame[name] = np.concatenate([part[name] for part in parts]) if parts else np.zeros(0)
        if self.with_exposure:
            n = len(units.tokens[0])
            secret_nll = np.concatenate([np.full(n, np.nan), parts[1]["secret_nll"]])
            is_reference = np.asarray(units.unit_kind == "reference", dtype=bool)
            planted = ~np.isnan(secret_nll)
            frame["secret_nll"] = secret_nll
            for name, values in zip(("exposure", "exposure_fit"), exposure(secret_nll[planted], is_reference[planted])):
                frame[name] = np.nan
                frame.loc[planted, name] = values
        return frame, sum(part["decoded"] for part in parts)


def merge(natural: Units, planted: Optional[Units]) -> Units:
    if planted is None:
        return natural
    cat = {
        name: np.concatenate([getattr(natural, name), getattr(planted, name)])
        for name in ("example_id", "unit_kind", "treat_step", "last_step", "repeats", "window")
    }
    return Units(**cat, tokens=natural.tokens + planted.tokens)


def panel_rows(frame, task: str) -> List[dict]:
    """Results rows: the mean of each outcome (and of `memorized`, score32 == 1) over each kind of unit."""
    rows = []
    frame = frame.assign(memorized=(frame["score32"] == 1.0).astype(float))
    outcomes = [*OUTCOMES, "memorized"] + [c for c in ("exposure", "exposure_fit") if c in frame.columns]
    for kind in KINDS:
        part = frame[frame["unit_kind"] == kind]
        for outcome in outcomes:
            values = part[outcome].dropna().to_numpy()
            if not len(values):
                continue
            stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
            rows.append(
                {
                    "task": task,
                    "metric": f"{outcome}_{kind}",
                    "value": float(values.mean()),
                    "stderr": stderr,
                    "n": len(values),
                }
            )
    return rows
