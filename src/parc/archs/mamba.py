"""Mamba: config class, FLOPs per token, fast paths (CUDA kernels when installed, else Parc's PyTorch scan).

Fast paths (`arch.fast_path`), all computing transformers' MambaMixer function with its parameters:
- ``cuda-kernels``: mamba_ssm + causal_conv1d, called by transformers' own MambaMixer (it binds them
  at import when they are installed). CUDA only; the fused training kernel needs both packages.
- ``torch-scan``: `parc.kernels.selective_scan`, an O(seq) custom-autograd recurrence; CPU or GPU.
- ``reference``: transformers' MambaMixer as is (on a machine without the kernels, its sequential
  scan, whose backward is O(seq^2)).
- ``auto``: ``cuda-kernels`` on CUDA when installed, else ``torch-scan`` (with a loud warning on CUDA).

Generation with a cache (`cache_params`) always runs transformers' forward: the fast path is the
training / full-sequence forward. Nothing here fetches from the Hub: the kernels come from the
installed packages or not at all.
"""

from __future__ import annotations

import importlib
import warnings

import torch
from transformers import MambaConfig, MambaForCausalLM
from transformers.models.mamba.modeling_mamba import MambaMixer, apply_mask_to_padding_states

from parc.archs.spec import ArchSpec
from parc.errors import ParcError
from parc.kernels import check_mode, install_class
from parc.kernels.selective_scan import selective_scan

MODES = ("auto", "reference", "torch-scan", "cuda-kernels")


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 3 x the selective scan's forward FLOPs.

    Matmul parameters per layer: in_proj (d -> 2 d_inner), x_proj (d_inner -> rank + 2 d_state),
    dt_proj (rank -> d_inner), out_proj (d_inner -> d), and the depthwise conv (d_inner x kernel
    multiply-adds per token, like a weight); plus the LM head (d x vocab; tied with the input
    embedding, whose lookup costs nothing). Each weight costs 2 FLOPs per token forward and 4
    backward, hence 6. The scan costs about 9 x d_inner x d_state FLOPs per token forward
    (discretise A and B, the state update, the C contraction: the count of the Mamba paper's
    kernel), x3 for forward + backward. It does not depend on seq_len (no attention), and is ~2 %
    of the total at 130M, so the result is close to 6 x parameters.
    """
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    d_inner, d_state, rank = config.intermediate_size, config.state_size, config.time_step_rank
    per_layer = 2 * d * d_inner + d_inner * (rank + 2 * d_state) + rank * d_inner + d_inner * d
    per_layer += d_inner * config.conv_kernel
    scan = 9 * d_inner * d_state
    return 6 * (n_layers * per_layer + d * vocab) + 3 * n_layers * scan


def cuda_kernels_missing() -> str | None:
    """None when mamba_ssm's fused training kernel and causal_conv1d import; else what is missing."""
    missing = []
    for module in ("mamba_ssm.ops.selective_scan_interface", "causal_conv1d"):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a broken CUDA extension fails with anything, not only ImportError
            missing.append(module.split(".")[0])
    return " and ".join(missing) or None


class TorchScanMambaMixer(MambaMixer):
    """MambaMixer whose full-sequence forward uses `parc.kernels.selective_scan`; same parameters and function."""

    def forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
        cache = cache if cache is not None else kwargs.pop("cache_params", None)  # transformers < 5.x named it so
        if cache is not None:  # generation: the cache bookkeeping is transformers' job
            return super().forward(hidden_states, cache=cache, attention_mask=attention_mask, **kwargs)
        seq_len, dtype = hidden_states.shape[1], hidden_states.dtype
        hidden_states = apply_mask_to_padding_states(hidden_states, attention_mask)
        x, gate = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        x = self.act(self.conv1d(x)[..., :seq_len])  # conv1d pads kernel-1 on both sides: keep the causal part
        x = apply_mask_to_padding_states(x.transpose(1, 2), attention_mask)
        time_step, B, C = torch.split(
            self.x_proj(x), [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], -1
        )
        y = selective_scan(
            x.transpose(1, 2),
            self.dt_proj.weight
            @ time_step.transpose(1, 2),  # dt_proj's bias is added inside, in fp32, as the kernel does
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=gate,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2).to(dtype))


def apply_fast_path(model: torch.nn.Module, mode: str, device: torch.device) -> str:
    """Install the chosen computation on every MambaMixer of `model`; returns the path's name and why."""
    check_mode("mamba", mode, MODES)
    device = torch.device(device)
    missing = cuda_kernels_missing() if device.type == "cuda" else "a CUDA device"
    if mode == "auto":
        mode = "cuda-kernels" if missing is None else "torch-scan"
        if device.type == "cuda" and missing is not None:
            warnings.warn(
                f"Mamba on CUDA without {missing}: training uses Parc's PyTorch scan, several times slower "
                "and far more memory-hungry than the kernels; install them with `pip install parc[cuda]`.",
                RuntimeWarning,
                stacklevel=2,
            )
    if mode == "cuda-kernels" and missing is not None:
        raise ParcError(f"arch.fast_path=cuda-kernels needs {missing}; install them or set arch.fast_path=auto")
    if mode == "torch-scan":
        install_class(model, [MambaMixer], TorchScanMambaMixer)
        return "torch-scan (parc.kernels.selective_scan)"
    install_class(model, [MambaMixer], MambaMixer)  # undo an earlier swap: transformers' own forward
    if mode == "cuda-kernels":
        return "cuda-kernels (mamba_ssm + causal_conv1d via transformers)"
    return "reference (transformers MambaMixer" + (", mamba_ssm kernels)" if missing is None else ", sequential scan)")


SPEC = ArchSpec("mamba", MambaConfig, MambaForCausalLM, flops_per_token, apply_fast_path)
