"""RWKV-4: config class, FLOPs per token, fast paths (a chunked WKV in PyTorch instead of the per-step loop).

Fast paths (`arch.fast_path`), all computing transformers' RwkvSelfAttention function with its parameters:
- ``chunked-wkv``: `parc.kernels.wkv`, parallel within chunks of the sequence; CPU or GPU, autograd.
- ``reference``: transformers' RwkvSelfAttention as is: its per-time-step Python loop, or the CUDA
  kernel if transformers fetched one from the Hub (see `no_hub_kernel`).
- ``auto``: ``chunked-wkv`` on every device.

transformers 5.x downloads its RWKV CUDA kernel from the Hub (`kernels` package) while *building*
the model, when CUDA, ninja and `kernels` are all present. Parc never wants that (offline clusters,
pinned code): `no_hub_kernel()` is the context the registry builds RWKV models in.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import torch
from transformers import RwkvConfig, RwkvForCausalLM
from transformers.models.rwkv import modeling_rwkv
from transformers.models.rwkv.modeling_rwkv import RwkvSelfAttention

from parc.archs.spec import ArchSpec
from parc.kernels import check_mode, install_class
from parc.kernels.wkv import wkv

MODES = ("auto", "reference", "chunked-wkv")


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 3 x the WKV recurrence's forward FLOPs.

    Matmul parameters per layer: time mixing key, value, receptance (d -> att) and output (att -> d);
    channel mixing key (d -> ffn), value (ffn -> d) and receptance (d -> d); plus the head
    (d x vocab, untied; the input embedding is a lookup and costs nothing). 2 FLOPs per weight per
    token forward, 4 backward: 6. The WKV recurrence costs about 20 FLOPs per channel per token
    forward (two max, four exp, the numerator/denominator updates and the division; the count of
    the per-step loop, whatever a faster implementation spends), x3 with backward. There is no
    attention over seq_len, so the result is 6 x (parameters - input embedding) within ~0.1 %.
    """
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    att, ffn = config.attention_hidden_size, config.intermediate_size
    per_layer = 3 * d * att + att * d + d * ffn + ffn * d + d * d  # k, v, r, out; ffn key, value, receptance
    return 6 * (n_layers * per_layer + d * vocab) + 3 * n_layers * 20 * att


def _refuse_hub_kernel(context_length):
    raise RuntimeError("Parc does not fetch kernels from the Hub")  # transformers logs it and goes on without


def no_hub_kernel() -> contextlib.AbstractContextManager:
    """While active, building an RWKV model never downloads transformers' WKV CUDA kernel from the Hub."""
    return mock.patch.object(modeling_rwkv, "load_wkv_cuda_kernel", _refuse_hub_kernel)


class ChunkedWkvSelfAttention(RwkvSelfAttention):
    """RwkvSelfAttention whose WKV is `parc.kernels.wkv`; same parameters, same function, state in and out."""

    def forward(self, hidden, state=None, use_cache=False):
        if hidden.size(1) == 1:  # one generated token: the reference does a single step, no loop to save
            return super().forward(hidden, state=state, use_cache=use_cache)
        receptance, key, value, state = self.extract_key_value(hidden, state=state)
        layer_state = tuple(s[:, :, self.layer_id] for s in state[2:]) if state is not None else None
        rwkv, layer_state = wkv(self.time_decay, self.time_first, key, value, state=layer_state, return_state=use_cache)
        if layer_state is not None:
            for slot, part in zip(state[2:], layer_state):  # state[2:] = numerator, denominator, max
                slot[:, :, self.layer_id] = part
        return self.output(receptance * rwkv), state


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    """Install the chosen WKV on every RwkvSelfAttention of `model`; returns the path's name."""
    check_mode("rwkv", mode, MODES)
    if mode == "reference":
        install_class(model, [RwkvSelfAttention], RwkvSelfAttention)  # undo an earlier swap
        hub_kernel = modeling_rwkv.rwkv_cuda_kernel is not None and torch.device(device).type == "cuda"
        return "reference (transformers RwkvSelfAttention, " + (
            "Hub CUDA kernel)" if hub_kernel else "per-step WKV loop)"
        )
    install_class(model, [RwkvSelfAttention], ChunkedWkvSelfAttention)
    return "chunked-wkv (parc.kernels.wkv)"


SPEC = ArchSpec("rwkv", RwkvConfig, RwkvForCausalLM, flops_per_token, apply_fast_path, build_context=no_hub_kernel)
