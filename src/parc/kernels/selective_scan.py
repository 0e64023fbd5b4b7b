"""Mamba's selective scan in plain PyTorch, fast on CPU and exact: the function transformers computes, faster.

transformers' torch-only path (`mamba_selective_scan`) loops over time and indexes the full
(batch, d_inner, seq, d_state) tensors one step at a time; autograd then materialises a
zero-filled tensor of that full size for every step's `select` backward, so the backward pass
costs O(seq^2). Here the recurrence h[t] = a[t] * h[t-1] + b[t] is a custom autograd
function over time-major, contiguous tensors: its forward is one fused `addcmul` per step, and its
backward is the same recurrence run backwards in time (g[t] = dL/dh[t] + a[t+1] * g[t+1]), so both
directions are O(seq). Everything around the recurrence (discretisation, C-contraction, skip, gate)
is a handful of whole-tensor ops that autograd differentiates.

The operations are those of the reference (products of decays in (0, 1], no exponent of a
cumulative sum), so there is nothing to overflow, for any step size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from parc.kernels import fp32_math


@torch.compiler.disable  # torch.compile would unroll the loop, seq steps per layer; it runs eagerly instead
def _linear_recurrence(decay: torch.Tensor, inputs: torch.Tensor, reverse: bool) -> torch.Tensor:
    """out[t] = inputs[t] + decay[t] * out[t-1] along dim 0; reversed: out[t] = inputs[t] + decay[t+1] * out[t+1]."""
    out = torch.empty_like(inputs)
    steps = range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs))
    previous = None
    for t in steps:
        if previous is None:
            out[t] = inputs[t]
        else:
            # `out=` a contiguous slice: no per-step allocation, one fused kernel per step.
            torch.addcmul(inputs[t], decay[t + 1] if reverse else decay[t], out[previous], out=out[t])
        previous = t
    return out


class LinearScan(torch.autograd.Function):
    """All states of h[t] = a[t] * h[t-1] + b[t] with h[-1] = 0, over dim 0 (time-major, contiguous)."""

    @staticmethod
    def forward(ctx, decay: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        states = _linear_recurrence(decay, inputs, reverse=False)
        ctx.save_for_backward(decay, states)
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        decay, states = ctx.saved_tensors
        # g[t] = dL/dh[t] including the path through every later state; dL/db[t] = g[t].
        grad_inputs = _linear_recurrence(decay, grad_states.contiguous(), reverse=True)
        grad_decay = torch.zeros_like(decay)
        grad_decay[1:] = grad_inputs[1:] * states[:-1]  # dL/da[t] = g[t] * h[t-1]; h[-1] = 0
        return grad_decay, grad_inputs


@fp32_math
def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Same arguments, layout and result as mamba_ssm's `selective_scan_fn` (and transformers' fallback).

    u, delta, z: (batch, d_inner, seq); A: (d_inner, d_state); B, C: (batch, d_state, seq); D, delta_bias: (d_inner,).
    Returns y: (batch, d_inner, seq) in u's dtype, with
    h[t] = exp(delta[t] A) h[t-1] + delta[t] B[t] u[t],  y[t] = C[t] . h[t] + D u[t],  y *= silu(z).
    """
    input_dtype = u.dtype
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    # Time-major (seq, batch, d_inner, d_state) so that each step of the recurrence is a contiguous block.
    delta_t = delta.permute(2, 0, 1).float().contiguous()
    decay = torch.exp(delta_t[..., None] * A.float())
    drive = (delta_t * u.permute(2, 0, 1).float())[..., None] * B.permute(2, 0, 1).float()[:, :, None, :]
    states = LinearScan.apply(decay, drive.contiguous())
    y = torch.einsum("lbdn,lbn->bdl", states, C.permute(2, 0, 1).float())
    if D is not None:
        y = y + u * D[None, :, None]
    if z is not None:
        y = y * F.silu(z)
    return y.to(input_dtype)
