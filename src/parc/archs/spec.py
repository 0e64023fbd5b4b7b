"""The spec every architecture module fills in (ArchSpec), and reading a published size preset (`arch.size`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from omegaconf import OmegaConf

from parc.errors import ParcError


@dataclass(frozen=True)
class ArchSpec:
    name: str
    config_class: type  # a transformers PretrainedConfig subclass
    model_class: type  # the *ForCausalLM class
    flops_per_token: Callable[[object, int], float]  # (hf_config, seq_len) -> training FLOPs per token
    apply_fast_path: Callable[[torch.nn.Module, str, torch.device], str]  # (model, mode, device) -> chosen path
    build_context: Callable[[], ContextManager] = contextlib.nullcontext  # held while the model is built


def size_preset(arch_cfg) -> dict:
    """The published size `arch.size` names (`arch.sizes[size]`), or {} for Parc's own full and tiny."""
    if arch_cfg.size in ("full", "tiny"):
        return {}
    presets = arch_cfg.get("sizes") or {}
    if arch_cfg.size not in presets:
        raise ParcError(
            f"arch {arch_cfg.name} has no size {arch_cfg.size!r}: choose arch.size= one of "
            f"{', '.join(['full', 'tiny', *presets])}"
        )
    return OmegaConf.to_container(presets[arch_cfg.size], resolve=True)
