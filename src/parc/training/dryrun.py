"""`dry_run=true`: the plan of a run, printed before anything is trained or written.

The model is built on the meta device: no data, network or disk is touched. Every derived quantity comes
from the same code the run uses (Plan, the arch spec's FLOPs, the memory and disk plans, the commit budget).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from parc import archs
from parc.data.stream import data_status
from parc.hub.pacing import commit_budget_line
from parc.store import diskplan
from parc.store.metricsfile import METRICS_FILE, measured_step_s
from parc.training.memory import describe as describe_memory
from parc.training.metrics import format_plan
from parc.training.optim import describe_schedule
from parc.training.runconfig import Plan
from parc.training.trainer import describe_steps


def dry_run_report(cfg: DictConfig) -> str:
    """The plan of the run, with the model built on the meta device: no data, network or disk is touched."""
    plan = Plan.build(cfg, world_size=int(os.environ.get("WORLD_SIZE", "1")))
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed, device="meta")
    spec = archs.get_spec(cfg.arch.name)
    lines = {
        "architecture": f"{cfg.arch.name} ({cfg.arch.size})",
        "parameters": archs.count_parameters(model),
        "seed": cfg.seed,
        "world size": plan.world_size,
        "micro-batch": plan.micro_batch_size,
        "accumulation": plan.accumulation,
        "global batch": plan.global_batch_size,
        "tokens per step": plan.tokens_per_step,
        "steps": plan.max_steps,
        "total tokens": plan.total_tokens,
        "learning rate": describe_schedule(cfg.trainer),
        "FLOPs per token": f"{spec.flops_per_token(model.config, cfg.data.seq_len):.4g}",
        "memory per device": describe_memory(cfg, model, plan.world_size),
        "checkpoint steps": describe_steps(plan.checkpoint_steps),
        "hub commits": commit_budget_line(
            cfg, plan.checkpoint_steps, plan.tokens_per_step, measured_step_s(Path(plan.output_dir) / METRICS_FILE)
        ),
        "data": data_status(cfg),
        **data_edit_lines(cfg),
        "output dir": plan.output_dir,
        **diskplan.dry_run_lines(cfg, model, plan),  # the bytes the checkpoint schedule writes vs free space
    }
    return "parc dry run: nothing trained, nothing written\n" + format_plan(lines)


def data_edit_lines(cfg: DictConfig) -> dict:
    """The held-out rows, the canaries planted and the intervention applied, when the run has them."""
    from parc.data.canaries import CanarySpec

    lines = {}
    holdout = int(cfg.data.get("holdout") or 0)
    if holdout:
        lines["holdout"] = (
            f"{holdout} rows of the shard's slice never trained (data.holdout_seed {cfg.data.get('holdout_seed') or 0}): "
            "the panel's controls"
        )
    spec = CanarySpec.from_config(cfg.data.get("canaries"))
    if spec is not None:
        lines["canaries"] = spec.describe(cfg.trainer.max_steps, cfg.trainer.global_batch_size)
    change = cfg.get("intervention")
    if change is not None and change.name != "none":
        if cfg.get("branch_from"):
            lines["intervention"] = f"{change.name} after the step of branch_from={cfg.branch_from} (an exact branch)"
        else:
            lines["intervention"] = f"{change.name} after step {change.step} (trained from scratch)"
    return lines
