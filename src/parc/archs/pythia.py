"""Pythia (GPT-NeoX): config class, FLOPs per token, fast paths (SDPA attention)."""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from parc.archs import ArchSpec


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding params + unembedding) + causal attention scores."""
    d, n_layers, ffn, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    per_layer = 4 * d * d + 2 * d * ffn  # qkv + out projection, two FFN matrices
    matmul_params = n_layers * per_layer + d * vocab
    attention = 2 * n_layers * seq_len * d  # QK^T and AV, forward, per token (full, not halved for causal)
    return 6 * matmul_params + 3 * attention


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    """SDPA attention (same function as eager attention; fused kernels where the device has them)."""
    if mode == "reference":
        model.config._attn_implementation = "eager"
        return "eager attention"
    model.config._attn_implementation = "sdpa"
    return "sdpa attention"


SPEC = ArchSpec("pythia", GPTNeoXConfig, GPTNeoXForCausalLM, flops_per_token, apply_fast_path)
