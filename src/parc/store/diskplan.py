"""How many bytes a run's checkpoint schedule will write, against the free space where it writes them.

Every scheduled checkpoint keeps its weights (model.safetensors, config, tokenizer files); the training
state (optimizer.pt: AdamW's two moments per trainable parameter, plus scheduler, RNG of every rank,
trainer state) is kept by the newest `checkpoint.keep_train_states` checkpoints (all when null; none with
`checkpoint.save_train_state=false`). Step 0's optimizer holds no moments yet. With pruning, one state more
than kept exists for a moment (the new one is written before the oldest is pruned): that peak is what must
fit. The Parc schedule (401 checkpoints of a 160M model) writes about 260 GB of weights alone.

Used by `python -m parc.train dry_run=true` (a "disk" line, and a warning when it will not fit) and at the
start of training (a warning on stderr); nothing here writes anything.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch

from parc.store.iofaults import format_bytes, nearest_existing

log = logging.getLogger("parc.store.diskplan")

TORCH_RECORD_BYTES = 200  # torch.save's zip: local header + 64-byte alignment + central directory, per tensor
SMALL_STATE_BYTES = 8 << 10  # scheduler.pt, trainer_state.json and empty optimizer structure
RNG_BYTES_PER_RANK = 16 << 10  # python + numpy + torch generator states
MANIFEST_BYTES = 4 << 10  # parc_checkpoint.json, generation_config.json
METRICS_ROW_BYTES = 300


@dataclass(frozen=True)
class DiskEstimate:
    checkpoints: int  # checkpoints still to write
    weights_bytes: int  # per checkpoint
    state_bytes: int  # per training state (after the first step)
    states: int  # training states kept when the run ends, among the checkpoints still to write
    total: int  # bytes the rest of the run adds
    peak: int  # the most it needs at once (one state more than kept, while pruning)
    free: int
    where: str

    @property
    def fits(self) -> bool:
        return self.peak <= self.free


def safetensors_bytes(model: torch.nn.Module) -> int:
    """The size of model.safetensors: each tensor once (tied weights are stored once), plus its JSON header."""
    unique: Dict[int, tuple] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        unique.setdefault(id(tensor), (name, tensor))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, tensor in unique.values():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_len = len(json.dumps(header, separators=(",", ":")))
    return 8 + header_len + (-header_len % 8) + offset


def adamw_state_bytes(model: torch.nn.Module) -> int:
    """optimizer.pt after a step: exp_avg and exp_avg_sq of every trainable parameter, and its step counter."""
    params = [p for p in model.parameters() if p.requires_grad]
    moments = sum(2 * p.numel() * p.element_size() for p in params)
    return moments + len(params) * (3 * TORCH_RECORD_BYTES + 4)


def directory_bytes(path: Optional[Path]) -> int:
    if path is None or not Path(path).is_dir():
        return 0
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def kept_state_steps(steps: Iterable[int], keep: Optional[int], save_train_state: bool) -> list:
    """Which scheduled checkpoints still hold their training state when the run ends."""
    steps = sorted(steps)
    if not save_train_state:
        return []
    return steps if keep is None else steps[-keep:]


def estimate(
    cfg,
    model: torch.nn.Module,
    schedule: Iterable[int],
    world_size: int,
    done: Iterable[int] = (),
    tokenizer_dir: Optional[Path] = None,
    start_step: int = 0,
) -> DiskEstimate:
    """Bytes the checkpoints of `schedule` not yet `done` will add, and the free space at cfg.output_dir."""
    schedule = sorted(schedule)
    todo = [s for s in schedule if s not in set(done)]
    weights = (
        safetensors_bytes(model) + len(model.config.to_json_string()) + directory_bytes(tokenizer_dir) + MANIFEST_BYTES
    )
    small_state = SMALL_STATE_BYTES + RNG_BYTES_PER_RANK * world_size
    full_state = small_state + adamw_state_bytes(model)
    kept = [
        s
        for s in kept_state_steps(schedule, cfg.checkpoint.keep_train_states, cfg.checkpoint.save_train_state)
        if s in todo
    ]
    state_of = {s: small_state if s == 0 else full_state for s in kept}
    total = weights * len(todo) + sum(state_of.values()) + METRICS_ROW_BYTES * (schedule[-1] - start_step)
    pruning = cfg.checkpoint.keep_train_states is not None and len(kept) < len(todo) and cfg.checkpoint.save_train_state
    peak = total + (full_state if pruning else 0)
    where = nearest_existing(Path(cfg.output_dir))
    return DiskEstimate(
        checkpoints=len(todo),
        weights_bytes=weights,
        state_bytes=full_state,
        states=len(kept),
        total=total,
        peak=peak,
        free=shutil.disk_usage(where).free,
        where=str(where),
    )


def describe(est: DiskEstimate) -> str:
    return (
        f"~{format_bytes(est.peak)} for {est.checkpoints} checkpoints ({format_bytes(est.weights_bytes)} of "
        f"weights each, {est.states} training states of {format_bytes(est.state_bytes)}); "
        f"{format_bytes(est.free)} free at {est.where}"
    )


def warning(est: DiskEstimate) -> Optional[str]:
    if est.fits:
        return None
    return (
        f"the checkpoint schedule needs ~{format_bytes(est.peak)} but only {format_bytes(est.free)} are free "
        f"at {est.where}: free space, keep fewer training states (checkpoint.keep_train_states=N), save none "
        f"(checkpoint.save_train_state=false), checkpoint less often, or choose another output_dir="
    )


def plan_for(
    cfg, model: torch.nn.Module, plan, tokenizer_dir: Optional[Path] = None, start_step: int = 0
) -> DiskEstimate:
    """The estimate for a run's Plan, counting the complete checkpoints already in its output_dir as done."""
    from parc.store.checkpoint import complete_checkpoints, step_of

    done = [step_of(p) for p in complete_checkpoints(Path(cfg.output_dir))]
    if tokenizer_dir is None:
        tokenizer_dir = Path(cfg.data.dir) / "tokenizer"
    return estimate(cfg, model, plan.checkpoint_steps, plan.world_size, done, tokenizer_dir, start_step)


def dry_run_lines(cfg, model: torch.nn.Module, plan) -> Dict[str, str]:
    """The dry run's disk line, and a warning line when the schedule will not fit."""
    est = plan_for(cfg, model, plan)
    lines = {"disk": describe(est)}
    if not est.fits:
        lines["disk warning"] = warning(est)
    return lines


def warn_if_short(cfg, model: torch.nn.Module, plan, tokenizer_dir: Path, start_step: int) -> None:
    """At the start of training: a warning on stderr when the rest of the schedule will not fit."""
    message = warning(plan_for(cfg, model, plan, tokenizer_dir, start_step))
    if message:
        log.warning("parc: warning: %s", message)
