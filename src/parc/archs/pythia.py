"""Pythia (GPT-NeoX): config class, FLOPs per token, fast paths (SDPA attention).

Fast paths (`arch.fast_path`): ``sdpa`` (torch's scaled_dot_product_attention: fused kernels where
the device has them; the same function), ``reference`` (transformers' eager attention), ``auto``
(= sdpa). Fused AdamW on CUDA and `arch.compile` are the trainer's business.
"""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from parc.archs.spec import ArchSpec
from parc.kernels import check_mode

MODES = ("auto", "reference", "sdpa")


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 12 x layers x seq_len x d (attention scores), as PaLM counts.

    Matmul parameters per layer: query/key/value (3 d^2) and dense (d^2), the MLP (2 d ffn); plus
    the unembedding (d x vocab, untied; the input embedding is a lookup). 2 FLOPs per weight per
    token forward, 4 backward: 6. Attention: QK^T and AV each cost 2 x seq_len x d FLOPs per token
    per layer forward, x3 with backward: 12 x layers x seq_len x d, counted over the full (not
    causally halved) square, as PaLM's MFU and nanoGPT do. At 160M and seq 2048 that adds ~30 % to
    the 6 x matmul term, which itself is 6 x (parameters - input embedding).
    """
    d, n_layers, ffn, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    per_layer = 4 * d * d + 2 * d * ffn
    matmul_params = n_layers * per_layer + d * vocab
    return 6 * matmul_params + 12 * n_layers * seq_len * d


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    """Set the attention implementation; the same function either way, so parameters are untouched."""
    check_mode("pythia", mode, MODES)
    implementation = "eager" if mode == "reference" else "sdpa"
    model.set_attn_implementation(implementation)
    return "reference (eager attention)" if mode == "reference" else "sdpa attention"


SPEC = ArchSpec("pythia", GPTNeoXConfig, GPTNeoXForCausalLM, flops_per_token, apply_fast_path)
