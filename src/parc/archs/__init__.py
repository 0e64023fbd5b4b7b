"""Architecture registry: one small spec per architecture (HF config, model build, FLOPs per token, fast paths).

`get_spec(name)` returns the spec; `build_model(arch_cfg, vocab_size, seed)` builds a randomly initialised
transformers model exactly as Parc did (`set_seed(seed)` then `from_config`), from values held in
`parc/configs/arch/*.yaml` — nothing is downloaded. Imports kernels and the shared bottom only.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
from omegaconf import OmegaConf

from parc.archs.spec import ArchSpec, size_preset  # noqa: F401  (public here)
from parc.errors import ParcError

__all__ = [
    "NAMES",
    "ArchSpec",
    "build_model",
    "count_parameters",
    "get_spec",
    "hf_config",
    "padded_vocab",
    "size_preset",
    "vocab_multiple",
]
NAMES = ("pythia", "mamba", "rwkv")  # the grid's order, as slurm/train_array.sbatch numbers its tasks


def _registry() -> Dict[str, ArchSpec]:
    from parc.archs import mamba, pythia, rwkv

    specs = {spec.name: spec for spec in (pythia.SPEC, mamba.SPEC, rwkv.SPEC)}
    return {name: specs[name] for name in NAMES}


def get_spec(name: str) -> ArchSpec:
    specs = _registry()
    if name not in specs:
        raise ParcError(f"unknown architecture {name!r}; choose arch= one of: {', '.join(sorted(specs))}")
    return specs[name]


def padded_vocab(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple


def vocab_multiple(arch_cfg) -> int:
    """What len(tokenizer) is padded to: arch.pad_vocab_multiple combined (lcm) with the size preset's own."""
    return math.lcm(arch_cfg.pad_vocab_multiple, size_preset(arch_cfg).get("pad_vocab_multiple", 1))


def hf_config(arch_cfg, vocab_size: int):
    """The transformers config for this arch and size, with Parc's vocab rule (len(tokenizer), optionally padded)."""
    spec = get_spec(arch_cfg.name)
    values = dict(OmegaConf.to_container(arch_cfg.hf, resolve=True))
    if arch_cfg.size == "tiny":
        values.update(OmegaConf.to_container(arch_cfg.tiny, resolve=True))
    values.update(size_preset(arch_cfg).get("hf", {}))
    values["vocab_size"] = padded_vocab(vocab_size, vocab_multiple(arch_cfg))
    try:
        return spec.config_class(**values)
    except (TypeError, ValueError) as exc:
        from parc.config import CONFIG_DIR

        raise ParcError(
            f"arch {arch_cfg.name}: invalid model config value ({exc}); fix {CONFIG_DIR}/arch/{arch_cfg.name}.yaml"
        ) from None


def build_model(arch_cfg, vocab_size: int, seed: int, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Random init exactly as Parc: transformers.set_seed(seed), then Model(config) in fp32."""
    from transformers import set_seed

    spec = get_spec(arch_cfg.name)
    config = hf_config(arch_cfg, vocab_size)
    set_seed(seed)
    with spec.build_context(), torch.device(device):
        model = spec.model_class(config)
    if arch_cfg.get("init", "hf") != "hf":
        from parc.archs.neox_init import apply_neox_init

        apply_neox_init(model, arch_cfg)  # draws from the generator set_seed(seed) just seeded
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once), as the model cards count them."""
    return sum(p.numel() for p in model.parameters())
