"""ONE notion of where a run's training state comes from: `StateSource`, a verified source that resuming a run and
branching one both load through (`Trainer._restore`). This one is a Parc checkpoint directory (this run's own, a
parent's for `branch_from=`, or a verified Hub download); another kind (parc.training.neox_source.NeoxSource, a raw
GPT-NeoX checkpoint) brings its own `load` and `load_weights`. For a branch, a Parc source also checks that this
run's data up to step k is the parent's (`check_prefix`); every Parc source must share this run's data (up to k),
seed, architecture and recipe (`check_compatible`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from parc.errors import ParcError
from parc.store import checkpoint


@dataclass(frozen=True)
class StateSource:
    """A verified checkpoint with its training state, and what a run started from it records."""

    path: Path
    record: dict = field(default_factory=dict)  # source (portable), step, tokens, weights sha256 (Hub: commit)

    def load(self, trainer, model, optimizer, branch: bool = False) -> dict:
        """The state `trainer` continues, checked against its run, the weights already in `model`: {"trainer":
        trainer_state.json with the lineage the run records (`init_from`, `branch`), "optimizer", "scheduler",
        "rng" (None: not restored)}. branch=True: an exact branch, whose data may differ after step k only."""
        state = checkpoint.load_train_state(self.path, trainer.accelerator.process_index)
        saved, current = state["trainer"]["identity"], trainer.identity()
        if branch:  # the data may change after step k only; the run's lineage is this branch's
            check_prefix(state["trainer"], trainer.batches, state["trainer"]["step"], self.record["source"])
            saved = {**saved, **{key: current[key] for key in ("data", "init_from", "branch_from")}}
            state["trainer"] = {**state["trainer"], "branch": dict(self.record)}
        check_compatible(saved, current, self.path)
        self.load_weights(model)
        return state

    def load_weights(self, model) -> None:
        checkpoint.load_weights(model, self.path)


def as_source(start) -> Optional[StateSource]:
    """What resume.find_start found (None, a checkpoint directory, or a source) as a source."""
    return start if start is None or isinstance(start, StateSource) else StateSource(Path(start))


def check_prefix(saved_state: dict, plan, step: int, where: str) -> None:
    """Refuse a branch whose batches of steps 1..k would differ from the parent's (a parent written before
    `data_prefix` was recorded is compared by its data fingerprint, which then must hold no data edits)."""
    parent = saved_state.get("data_prefix")
    if parent is None:
        data = saved_state["identity"]["data"]
        parent = data if not {"canaries", "intervention"} & set(data) else {"unknown": "no data_prefix recorded"}
    ours = plan.prefix(step)
    if parent != ours:
        key = next(k for k in sorted(set(parent) | set(ours)) if parent.get(k) != ours.get(k))
        raise ParcError(
            f"branch_from={where}: this run's data up to step {step} differs from the parent's ({key}: "
            f"parent {parent.get(key)!r}, this run {ours.get(key)!r}); give the parent's data settings "
            "(data.*, data.canaries.*) and change only what intervention= changes after the branch"
        )


def check_compatible(saved: Dict, current: Dict, where: Path) -> None:
    """Refuse to continue a run whose data, architecture, seed or recipe differ from this config."""
    checks = {
        "data": (saved["data"], current["data"]),
        "seed": (saved["seed"], current["seed"]),
        "arch": (saved["model_config"], current["model_config"]),
    }
    for key, value in current["recipe"].items():
        checks[f"trainer.{key}"] = (saved["recipe"].get(key), value)
    for key in ("init_from", "branch_from"):  # a branched run resumes without them; another source is refused
        if current.get(key) is not None:
            checks[key] = (saved.get(key), current[key])
    old_steps, new_steps = checks["trainer.max_steps"]
    if old_steps != new_steps:  # before "data": the data slice changes with it, and this is the cause to name
        raise ParcError(
            f"{where} was trained with trainer.max_steps={old_steps}, this run asks for {new_steps}: the "
            f"run's data slice (global_batch_size x max_steps sequences of data.shard) and its LR and "
            f"checkpoint schedules depend on it, so a resumed run cannot change it; to continue these "
            f"weights with a new schedule, start a new run from them: init_from={where} "
            f"output_dir=<a new directory>"
        )
    for name, (old, new) in checks.items():
        if old != new:
            detail = _first_difference(old, new)
            raise ParcError(
                f"{where} was trained with a different {name} ({detail}); resume with the same "
                f"settings, or start a new run elsewhere (resume=none output_dir=...)"
            )


def _first_difference(old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return f"{key}: checkpoint {old.get(key)!r}, this run {new.get(key)!r}"
    return f"checkpoint {old!r}, this run {new!r}"
