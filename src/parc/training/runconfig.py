"""What a composed training config means: the checks a type cannot express, the plan, the portable copy.

``validate`` adds the checks a type cannot express (positive step counts, a divisible batch, a known
schedule, a warmup within the run, a valid branch template) and ``Plan`` derives, in one place, every
quantity the run prints and uses: accumulation, tokens per step, checkpoint steps, output directory.
``portable_config`` is the config without local paths, as stored in every checkpoint and published, and in
`<output_dir>/config.yaml` (``write_run_config``, the file's one writer; parc.config.read_run_config reads it);
``config_on_this_machine`` is the way back: a run's saved config with this machine's data location (the
run's own record first, see parc.data.location).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

from parc.config import RUN_CONFIG
from parc.errors import ParcError


def validate(cfg: DictConfig) -> None:
    """Checks a type cannot express. Raises ParcError naming the problem and the fix."""
    check_ranges(cfg)
    check_choices(cfg)
    from parc.training.lr_neox import warmup_iters

    warmup_iters(cfg.trainer)  # a warmup longer than the run is refused: it would make NeoX's LR negative
    check_checkpoints(cfg)
    check_hub(cfg)
    check_data_edits(cfg)
    resume = cfg.resume
    if not (resume in ("auto", "none") or resume.startswith(("checkpoint-", "hub:", "neox:")) or os.sep in resume):
        raise ParcError(
            f"resume={resume!r}: use auto, none, checkpoint-N, hub:<revision>, a checkpoint path or "
            f"neox:<raw GPT-NeoX global_stepN dir>"
        )


def check_ranges(cfg: DictConfig) -> None:
    """Counts that must be positive and rates, seeds and waits that must not be negative."""
    t, d = cfg.trainer, cfg.data
    positive = {
        "trainer.max_steps": t.max_steps,
        "trainer.global_batch_size": t.global_batch_size,
        "trainer.micro_batch_size": t.micro_batch_size,
        "data.seq_len": d.seq_len,
        "data.vocab_size": d.vocab_size,
        "trainer.log_every": t.log_every,
        "arch.pad_vocab_multiple": cfg.arch.pad_vocab_multiple,
        "hub.queue_size": cfg.hub.queue_size if cfg.hub.queue_size is not None else 1,
        "hub.max_commits_per_hour": cfg.hub.max_commits_per_hour,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ParcError(f"{key}={value} must be a positive integer")
    for key, value in {
        "hub.retry_initial_s": cfg.hub.retry_initial_s,
        "hub.retry_max_s": cfg.hub.retry_max_s,
        "hub.retry_timeout_s": cfg.hub.retry_timeout_s,
        "data.shard": d.shard,
        "data.holdout": d.holdout,
        "data.holdout_seed": d.holdout_seed,
        "seed": cfg.seed,
        "trainer.lr": t.lr,
        "trainer.min_lr": t.min_lr,
        "trainer.weight_decay": t.weight_decay,
        "trainer.grad_clip": t.grad_clip,
    }.items():
        if value < 0:
            raise ParcError(f"{key}={value} must not be negative")
    if len(t.betas) != 2:
        raise ParcError("trainer.betas must be two numbers, e.g. trainer.betas=[0.9,0.999]")
    if cfg.hub.wait_at_end < 0:
        raise ParcError(f"hub.wait_at_end={cfg.hub.wait_at_end} must not be negative (seconds; 0 = do not wait)")


def check_choices(cfg: DictConfig) -> None:
    """Keys that take one of a few names."""
    t, d, c = cfg.trainer, cfg.data, cfg.checkpoint
    choices = {
        "trainer.precision": (t.precision, ("fp32", "bf16", "fp16")),
        "trainer.lr_schedule": (t.lr_schedule, ("cosine", "linear", "constant", "neox")),
        "trainer.strategy": (t.strategy, ("ddp", "fsdp")),
        "arch.init": (cfg.arch.init, ("hf", "neox", "neox-normal")),
        "data.format": (d.format, ("parc", "megatron")),
        "trainer.loss_normalization": (t.loss_normalization, ("tokens", "hf4")),
        "trainer.weight_decay_rule": (t.weight_decay_rule, ("transformers", "hf4.50", "neox")),
        "checkpoint.schedule": (c.schedule, ("parc", "pythia", "neox_raw", "list", "every")),
        "data.packing": (d.packing, ("parc", "concat")),
        "arch.size": (cfg.arch.size, ("full", "tiny", *cfg.arch.sizes)),
        "hub.mode": (cfg.hub.mode, ("online", "offline")),
        "logger.mode": (cfg.logger.mode, ("offline", "online", "disabled")),
        "device": (cfg.device, ("auto", "cpu", "cuda")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ParcError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def check_checkpoints(cfg: DictConfig) -> None:
    c, max_steps = cfg.checkpoint, cfg.trainer.max_steps
    if c.every is not None and c.every <= 0:
        raise ParcError(f"checkpoint.every={c.every} must be a positive integer")
    if c.schedule == "list" and any(s < 0 or s > max_steps for s in c.steps):
        raise ParcError(f"checkpoint.steps must lie in 0..{max_steps} (trainer.max_steps)")
    if c.keep_train_states is not None and c.keep_train_states < 1:
        raise ParcError("checkpoint.keep_train_states must be >= 1 (or null to keep all)")


def check_hub(cfg: DictConfig) -> None:
    """The branch template and the extra formats published beside each revision."""
    from parc.hub.branches import check as check_branch

    check_branch(cfg.hub.branch)
    unknown = sorted(set(cfg.hub.extra_formats) - {"rwkv"})
    if unknown:
        raise ParcError(f"hub.extra_formats: unknown format(s) {', '.join(unknown)}; the one available is rwkv")
    if "rwkv" in cfg.hub.extra_formats and cfg.arch.name != "rwkv":
        raise ParcError(f"hub.extra_formats=[rwkv] needs arch=rwkv (this run is arch={cfg.arch.name})")


def check_data_edits(cfg: DictConfig) -> None:
    """data.canaries and intervention= as far as the config alone tells (the plan checks the rest)."""
    from parc.data.canaries import CanarySpec
    from parc.data.edits import NAMES

    spec = CanarySpec.from_config(cfg.data.get("canaries"))
    if spec is not None:
        spec.check(cfg.trainer.max_steps, cfg.trainer.global_batch_size, cfg.data.seq_len, cfg.data.vocab_size)
    change = cfg.get("intervention")
    if change is not None and change.name not in NAMES:
        raise ParcError(f"intervention={change.name!r} is not one of {', '.join(NAMES)}")
    if change is not None and change.name != "none" and change.step is None and not cfg.get("branch_from"):
        raise ParcError(
            f"intervention={change.name} needs the step it starts after: branch_from=<checkpoint-k> "
            "(an exact branch), or intervention.step=k for a run from scratch"
        )


@dataclass(frozen=True)
class Plan:
    """Every derived quantity of a run, computed once and printed at start."""

    world_size: int
    micro_batch_size: int
    global_batch_size: int
    accumulation: int
    seq_len: int
    max_steps: int
    tokens_per_step: int
    total_tokens: int
    sequences_per_shard: int
    checkpoint_steps: List[int]
    output_dir: str

    @classmethod
    def build(cls, cfg: DictConfig, world_size: int = 1) -> "Plan":
        from parc.store.steps import checkpoint_steps

        t = cfg.trainer
        per_step = t.micro_batch_size * world_size
        if t.global_batch_size % per_step:
            raise ParcError(
                f"trainer.global_batch_size={t.global_batch_size} is not divisible by "
                f"trainer.micro_batch_size={t.micro_batch_size} x world size {world_size}; "
                f"pick a micro-batch size that divides {t.global_batch_size // world_size if t.global_batch_size % world_size == 0 else t.global_batch_size}"
            )
        return cls(
            world_size=world_size,
            micro_batch_size=t.micro_batch_size,
            global_batch_size=t.global_batch_size,
            accumulation=t.global_batch_size // per_step,
            seq_len=cfg.data.seq_len,
            max_steps=t.max_steps,
            tokens_per_step=t.global_batch_size * cfg.data.seq_len,
            total_tokens=t.global_batch_size * cfg.data.seq_len * t.max_steps,
            sequences_per_shard=t.global_batch_size * t.max_steps,
            checkpoint_steps=checkpoint_steps(cfg.checkpoint, t.max_steps),
            output_dir=str(cfg.output_dir),
        )


def write_run_config(output_dir: Path, cfg: DictConfig) -> Path:
    """`<output_dir>/config.yaml`, atomically (the caller guards the write against disk faults)."""
    from parc.store.fileio import atomic_write

    text = OmegaConf.to_yaml(portable_config(cfg))
    path = Path(output_dir) / RUN_CONFIG
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def portable_config(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config without local paths: safe to store in checkpoints and to publish."""
    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("paths", None)
    values["output_dir"] = Path(values["output_dir"]).name
    for key in ("init_from", "branch_from"):
        if values.get(key):
            from parc.training.initfrom import portable

            values[key] = portable(values[key])
    data = values["data"]
    data["dir"] = Path(data["dir"]).name
    data["data_files"] = file_names(data.get("data_files"))
    for key in ("path", "index_maps"):  # data.format=megatron: where the indexed dataset lies on this machine
        if data.get(key):
            data[key] = Path(data[key]).name
    return values


def file_names(data_files):
    """data.data_files without their directories: a name, a list of names, or {split: names}."""
    if isinstance(data_files, dict):
        return {split: file_names(files) for split, files in data_files.items()}
    if isinstance(data_files, list):
        return [file_names(f) for f in data_files]
    return Path(data_files).name if data_files else data_files


def data_overrides(data: dict) -> List[str]:
    """`data.<key>=<value>` for a saved data config's plain values (locations excluded), as Hydra overrides."""
    import re

    out = []
    for key, value in data.items():
        if key in ("name", "dir", "data_files"):
            continue
        if value is None:
            out.append(f"data.{key}=null")
        elif isinstance(value, bool):
            out.append(f"data.{key}={str(value).lower()}")
        elif isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"[\w.-]+", value)):
            out.append(f"data.{key}={value}")
    return out


def gives_data_dir(overrides: List[str]) -> bool:
    """Whether the user named the data directory (which then wins over a run's recorded one)."""
    return any(o.startswith(("data.dir=", "+data.dir=")) for o in overrides)


def config_on_this_machine(saved: Dict[str, Any], run_dir, overrides: List[str]) -> DictConfig:
    """A training config for reading the data of a run whose portable config is `saved` (its data and trainer
    sections): the data group as the run composed it (its dir may interpolate any data key), under this
    machine's paths, the user's overrides last; the data directory is the one the run recorded
    (`<run_dir>/data_stream.json`) unless the user gives data.dir= or that path is gone."""
    from parc.config import compose
    from parc.data.location import check_same_stream, recorded_stream_dir

    data = saved["data"]
    cfg = compose([f"data={data['name']}", *data_overrides(data), *overrides])
    recorded = recorded_stream_dir(run_dir) if run_dir is not None else None
    if recorded is not None and not gives_data_dir(overrides):
        cfg.data.dir = str(recorded)
    elif run_dir is not None:
        check_same_stream(run_dir, Path(cfg.data.dir))
    location = {"dir": cfg.data.dir, "data_files": cfg.data.data_files}
    cfg.data = OmegaConf.merge(cfg.data, {k: v for k, v in data.items() if k not in location})
    for key, value in saved.get("trainer", {}).items():
        cfg.trainer[key] = value
    return cfg
