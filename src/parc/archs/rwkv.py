"""RWKV-4: config class, FLOPs per token, fast paths (a chunked WKV in PyTorch instead of the per-step loop)."""

from __future__ import annotations

import torch
from transformers import RwkvConfig, RwkvForCausalLM

from parc.archs import ArchSpec


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params + the WKV recurrence (~ 20 x attention_hidden, x3 for backward)."""
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    att, ffn = config.attention_hidden_size, config.intermediate_size
    per_layer = 3 * d * att + att * d + d * ffn + ffn * d + d * d  # k, v, r, out; ffn key, value, receptance
    return 6 * (n_layers * per_layer + d * vocab) + 3 * n_layers * 20 * att


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    return "reference (per-step WKV loop)"


SPEC = ArchSpec("rwkv", RwkvConfig, RwkvForCausalLM, flops_per_token, apply_fast_path)
