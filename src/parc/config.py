"""Typed schema for every knob, config composition, and the checks that turn mistakes into one-line errors.

The dataclasses below are registered with Hydra's ConfigStore as the base of
``configs/train.yaml`` (package data, src/parc/configs/: it ships in the wheel), so an unknown key or a wrong
type is refused while the config is composed. What a composed config means for a run (the checks a type
cannot express, the derived plan, the portable copy stored with checkpoints) is parc.training.runconfig.
This module imports nothing of Parc but its errors: every layer may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from parc.errors import ParcError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: every yaml ships in the wheel


def check_config_dir(directory: Path) -> Path:
    """The config directory, or a one-line error when the install lacks it (checked before any composition)."""
    if not (directory / "train.yaml").is_file():
        raise ParcError(
            f"parc's config directory {directory} is missing or incomplete (no train.yaml): the "
            "install is broken; reinstall parc (pip install --force-reinstall parc, or pip install -e . "
            "in a checkout)"
        )
    return directory


@dataclass
class ArchConfig:
    name: str = MISSING  # registry key: pythia | mamba | rwkv
    model_type: str = MISSING  # transformers model_type of the config class
    hf: Dict[str, Any] = field(default_factory=dict)  # config values of the published model
    tiny: Dict[str, Any] = field(default_factory=dict)  # overrides of `hf` used when size=tiny
    size: str = "full"  # full | tiny | a key of `sizes` | a key of `aliases`
    aliases: Dict[str, str] = field(default_factory=dict)  # old size names: arch.size=<alias> is read as its size
    sizes: Dict[str, Any] = field(default_factory=dict)  # published size presets: {hf: {...}, pad_vocab_multiple, ...}
    init: str = "hf"  # hf (from_config, as Parc) | neox (Pythia's small_init/wang_init; per size) | neox-normal
    pad_vocab_multiple: int = 1  # 1 = len(tokenizer) as Parc did; 128 gives 50304 for Pythia
    fast_path: str = "auto"  # auto | reference | <arch-specific name>; see parc.archs
    compile: bool = False  # torch.compile the model


@dataclass
class CanaryConfig:
    """Canaries overwriting seeded rows of the data plan (parc.data.canaries); seed=null: none."""

    seed: Optional[int] = None  # the canary generator's seed (tokens and placement); null: no canaries
    per_group: int = 8  # canaries per (window, repetition count) group
    repeats: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])  # copies of each canary in a group
    windows: List[List[int]] = field(default_factory=list)  # step windows [start, end) (1-based steps)
    references: int = 0  # never-inserted canaries from the same generator (the exposure reference set)
    prompt: Optional[List[int]] = None  # a given prompt (token ids) shared by every canary; null: a random one each
    prompt_tokens: int = 32  # length of a random prompt; the secret fills the rest of the row


@dataclass
class DataConfig:
    name: str = MISSING
    dataset: str = MISSING  # datasets.load_dataset path ("Skylion007/openwebtext", "json", ...)
    dataset_config: Optional[str] = None
    # for file-based builders ("json", "text"): a path or a glob, or a list of them (read in the order given)
    data_files: Any = None
    split: str = "train"
    text_column: str = "text"
    streaming: bool = False
    max_documents: Optional[int] = None  # read only the first N documents
    tokenizer: str = MISSING  # hub id or local dir; "train-bpe" trains a ByteLevel BPE at prepare time
    tokenizer_vocab_size: int = 2048  # only for train-bpe
    vocab_size: int = MISSING  # len(tokenizer); checked against the prepared manifest
    seq_len: int = 1024
    packing: str = "parc"  # parc (full chunks of each document only) | concat (GPT-style, EOS-joined)
    dir: str = MISSING  # where the packed stream and its manifest live
    shard: int = 0  # k-th disjoint slice of the stream, each as long as one run consumes
    data_seed: Optional[int] = None  # None: stream order (as Parc); an int permutes within the slice
    max_file_bytes: int = 1 << 30  # bound on each packed array file
    auto_prepare: bool = False  # prepare on first use (the bundled demo); else refuse and say how
    format: str = "parc"  # parc (prepared by parc.prepare) | megatron (an MMIDIDX indexed dataset read in place)
    path: Optional[str] = None  # megatron: the dataset prefix (without .bin/.idx), e.g. .../document
    index_maps: Optional[str] = None  # megatron: NeoX index-map prefix (<prefix>_{doc,sample,shuffle}_idx.npy)
    canaries: CanaryConfig = field(default_factory=CanaryConfig)  # planted sequences (parc.data.canaries)
    # Never-trained rows inside the run's slice (the panel's controls, parc.study.evaluations.panel): with H > 0 the
    # slice is global_batch_size * max_steps + H rows (shard k starts at k times that) and the H rows
    # default_rng([holdout_seed, shard]).choice(slice, H, replace=False) are skipped; the rest are the training rows
    # in stream order, which data_seed permutes as usual. 0: none, the slice is exactly the training rows.
    holdout: int = 0
    holdout_seed: int = 0  # seeds the holdout only (independent of data_seed and of the world size)


@dataclass
class PrepareConfig:
    part: int = 0
    num_parts: int = 1
    batch_size: int = 1000  # documents per tokenizer call
    num_proc: Optional[int] = None  # tokenizer worker processes; None = all cores


@dataclass
class TrainerConfig:
    max_steps: int = 4000
    global_batch_size: int = 512  # sequences per optimizer step, whatever the world size
    micro_batch_size: int = 32  # sequences per forward pass per process
    lr: float = 6e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.1
    weight_decay_rule: str = (
        "transformers"  # which tensors decay: transformers (installed) | hf4.50 (parc.training.optim)
    )
    warmup_steps: Optional[int] = 100  # null when warmup_fraction gives it; longer than max_steps is refused
    warmup_fraction: Optional[float] = None  # GPT-NeoX's `warmup`: this share of max_steps (Pythia: 0.01)
    lr_schedule: str = "cosine"  # cosine | linear | constant (transformers' schedules) | neox (GPT-NeoX v1.0)
    min_lr: float = 0.0  # the floor of lr_schedule=neox
    grad_clip: float = 1.0
    loss_normalization: str = (
        "tokens"  # tokens (mean over predicted tokens, transformers 5) | hf4 (see parc.training.loss)
    )
    ignore_eos_labels: bool = True  # as Parc's collator (pad = eos): labels equal to eos are not predicted
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + dynamic loss scaling; CUDA only)
    strategy: str = "ddp"  # ddp (replicated) | fsdp (FSDP2 full shard through Accelerate)
    tf32: bool = False
    log_every: int = 1
    progress: bool = True  # console progress bar (rank 0)


@dataclass
class CheckpointConfig:
    schedule: str = "parc"  # parc (every 10) | pythia (0, 1, 2, 4 .. 512, then evenly) | neox_raw | list | every
    every: Optional[int] = None  # checkpoint.every=N overrides the schedule
    steps: List[int] = field(default_factory=list)  # for schedule=list
    interval: Optional[int] = None  # parc: 10; pythia: None = every 1000/143000 of the run; neox_raw: x 1, 2 .. 128
    keep_train_states: Optional[int] = None  # newest N full training states kept; None keeps all
    save_train_state: bool = True


@dataclass
class HubConfig:
    repo_id: Optional[str] = None  # "org/name", or "org" for a name derived from arch/seed/shard
    mode: str = "online"  # online | offline (stage locally; push later with python -m parc.sync)
    private: bool = True
    push_train_state: bool = True
    queue_size: Optional[int] = (
        None  # revisions waiting before training waits too; None: never (the journal holds them)
    )
    branch: str = "checkpoint-{N}"  # Hub branch of each revision; {N} = the step (Pythia: "step{N}")
    retry_initial_s: float = 1.0  # first wait after a transient failure (5xx, 429, dropped connection)
    retry_max_s: float = 60.0  # the wait doubles up to this (a 429's Retry-After is honoured beyond it)
    retry_timeout_s: float = 3600.0  # one push keeps retrying this long before it counts as failed
    max_commits_per_hour: float = 100.0  # commits spaced 3600/this s apart (the Hub refuses more than 128/hour)
    wait_at_end: float = 900.0  # s to wait for pending pushes after training; the rest: python -m parc.sync
    extra_formats: List[str] = field(default_factory=list)  # also publish e.g. [rwkv]: BlinkDL's .pth
    step_time_s: Optional[float] = None  # dry run's commit estimate; None: measured (metrics.jsonl) or assumed


@dataclass
class LoggerConfig:
    wandb: bool = False
    project: str = "parc"
    entity: Optional[str] = None
    mode: str = "offline"  # offline | online | disabled
    tags: List[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    root: str = "."
    data_dir: str = "${paths.root}/data"
    output_root: str = "${paths.root}/runs"


@dataclass
class InterventionConfig:
    """A change of the data plan from step `step` on (parc.data.edits); chosen by intervention=<name>."""

    name: str = "none"  # none | reshuffle | block_swap | drop | token_map | canaries
    step: Optional[int] = None  # steps after it change; null: the branch_from checkpoint's step
    seed: int = 0  # reshuffle: the seed of the new order of the remaining sequences
    blocks: List[int] = field(default_factory=list)  # block_swap: [a, b, c, d] swaps steps [a, b) and [c, d)
    rows: List[int] = field(default_factory=list)  # drop: stream rows replaced by rows after the run's slice
    token_map: List[List[int]] = field(default_factory=list)  # token_map: [[from, to], ...] on inputs and labels


@dataclass
class TrainConfig:
    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0  # weight initialisation only; the data is chosen by data.shard / data.data_seed
    run_name: str = "parc"
    output_dir: str = "${paths.output_root}/${run_name}/${arch.name}-seed${seed}-shard${data.shard}"
    resume: str = "auto"  # auto | none | checkpoint-N | <path> | hub:<revision> | neox:<raw GPT-NeoX checkpoint>
    init_from: Optional[str] = (
        None  # new run from these weights: <checkpoint dir> | hub:<org/name>@<revision> | neox:<dir>
    )
    # an exact branch: weights, optimizer, schedule, RNG and step of checkpoint-k, then `intervention`'s data
    # checkpoint-k (of output_dir) | <run dir>/checkpoint-k | hub:<org/name>@<rev> | neox:<raw GPT-NeoX checkpoint>
    branch_from: Optional[str] = None
    intervention: InterventionConfig = field(default_factory=InterventionConfig)
    overwrite: bool = False  # with resume=none (or neox:): delete an existing run in output_dir first
    dry_run: bool = False
    device: str = "auto"  # auto | cpu | cuda


CELL_NAME = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)-seed(?P<seed>\d+)-shard(?P<shard>\d+)$")


def cell_name(arch: str, seed: int, shard: int) -> str:
    """A grid cell's name, `<arch>-seed<S>-shard<K>`: its output_dir under the run root (the default output_dir
    above builds the same; tests/test_config.py checks they agree) and the tail of its derived Hub repo."""
    return f"{arch}-seed{seed}-shard{shard}"


def parse_cell_name(name: str) -> Optional[Tuple[str, int, int]]:
    """(arch, seed, shard) of a cell name, or None when `name` is not one."""
    match = CELL_NAME.match(name)
    return (match["arch"], int(match["seed"]), int(match["shard"])) if match else None


RUN_CONFIG = "config.yaml"  # <output_dir>/config.yaml: the run's portable config (parc.training.runconfig writes it)


def read_run_config(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The config a run saved in `<run_dir>/config.yaml` (unresolved, as a dict); None when there is none."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # OmegaConf and yaml raise many types; all say the file is not a config
        raise ParcError(
            f"{path} is not a readable config ({type(exc).__name__}): restore it from the run's "
            "checkpoints (trainer_state.json holds the same config)"
        ) from None
    if not isinstance(values, dict):
        raise ParcError(f"{path} is not a run config (no keys): restore it from the run's checkpoints")
    return values


def register_schema() -> None:
    import parc

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    # ${parc_package:} lets configs point at data shipped inside the package (the demo corpus).
    OmegaConf.register_new_resolver("parc_package", lambda: str(Path(parc.__file__).parent), replace=True)


def compose(overrides: List[str], config_name: str = "train") -> DictConfig:
    """Compose the config as Hydra would for `python -m parc.train <overrides>`; errors become ParcError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_config_dir(CONFIG_DIR)  # first: a broken install is not the user's experiment= typo
    register_schema()
    for override in overrides:  # Hydra silently ignores an unknown option of an optional group
        group, _, option = override.partition("=")
        if group == "experiment" and option and not (CONFIG_DIR / "experiment" / f"{option}.yaml").exists():
            known = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
            raise ParcError(f"unknown experiment {option!r}: choose experiment= one of {', '.join(known)}")
    overrides = [quote_branch_template(o) for o in overrides]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(read_size_alias(cfg))
    except Exception as exc:  # Hydra/OmegaConf raise many types; all are user input problems here
        raise ParcError(describe_compose_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def read_size_alias(cfg: DictConfig) -> DictConfig:
    """`arch.size` given by an old name (`arch.aliases`: Pythia v0's 125m is 160m) becomes the size it names,
    before any interpolation reads it (the size preset's lr, the output directory). Returns cfg."""
    arch = cfg.get("arch")
    target = (arch.get("aliases") or {}).get(str(arch.size).lower()) if arch is not None else None
    if target is not None:
        arch.size = target
    return cfg


def quote_branch_template(override: str) -> str:
    """`hub.branch=step{N}` as typed: Hydra's grammar would read `{` as a dict, so the value is quoted for it."""
    key, sep, value = override.partition("=")
    if key.lstrip("+~") == "hub.branch" and sep and "{" in value and value[:1] not in "'\"":
        return f"{key}='{value}'"
    return override


def describe_compose_error(exc: BaseException) -> str:
    """Condense a Hydra/OmegaConf composition error to one line that names the problem and the fix."""
    text = str(exc)
    cause = str(exc.__cause__) if exc.__cause__ is not None else ""
    full_key = next((ln.split(":", 1)[1].strip() for ln in cause.splitlines() if "full_key:" in ln), None)
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], flags=re.M)
        return f"unknown {group} {option!r}: choose {group}= one of {', '.join(options)}"
    if "not in" in cause and full_key:
        return f"unknown config key {full_key!r}: check the spelling (python -m parc.train --cfg job lists every key)"
    if full_key:
        reason = cause.splitlines()[0].strip()
        return f"bad value for {full_key}: {reason}"
    return " ".join(text.split())
