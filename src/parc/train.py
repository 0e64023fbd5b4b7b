"""`python -m parc.train [overrides]`: compose the config, check it, then train or (dry_run=true) print the plan.

Hydra's own command line (`-m` sweeps with a launcher, `--cfg job`, `--help`) is used when a flag is given;
plain runs compose the same config through Hydra's compose API, so nothing is written before every
check has passed (Hydra's run directory and logging are not used: each rank derives output_dir itself).
"""

from __future__ import annotations

import sys
from typing import List, Optional

from omegaconf import DictConfig, OmegaConf

from parc.config import CONFIG_DIR, Plan, compose, register_schema, validate
from parc.errors import exit_on_error


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg.startswith("-") for arg in argv):
        return hydra_cli()
    run_composed(argv)


@exit_on_error
def run_composed(overrides: List[str]) -> None:
    run(compose(overrides))


@exit_on_error
def run(cfg: DictConfig) -> None:
    validate(cfg)
    if cfg.dry_run:
        print(dry_run_report(cfg))
        return
    from parc.metrics import log_to_stderr
    from parc.trainer import train

    log_to_stderr()  # parc's own messages (Hub pushes, waits, retries) on stderr
    code = train(cfg)
    if code:
        sys.exit(code)


def dry_run_report(cfg: DictConfig) -> str:
    """The plan of the run, with the model built on the meta device: no data, network or disk is touched."""
    import os

    from parc import archs, diskplan
    from parc.data.stream import data_status
    from parc.metrics import format_plan
    from parc.pacing import commit_budget_line
    from parc.trainer import describe_steps
    from parc.memory import describe as describe_memory

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
        "FLOPs per token": f"{spec.flops_per_token(model.config, cfg.data.seq_len):.4g}",
        "memory per device": describe_memory(cfg, model, plan.world_size),
        "checkpoint steps": describe_steps(plan.checkpoint_steps),
        "hub commits": commit_budget_line(cfg, plan.checkpoint_steps, plan.tokens_per_step),
        "data": data_status(cfg),
        "output dir": plan.output_dir,
        **diskplan.dry_run_lines(cfg, model, plan),  # the bytes the checkpoint schedule writes vs free space
    }
    return "parc dry run: nothing trained, nothing written\n" + format_plan(lines)


def hydra_cli() -> None:
    import hydra

    register_schema()

    @hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base=None)
    def task(cfg: DictConfig) -> None:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        run(cfg)

    task()


if __name__ == "__main__":
    main()
