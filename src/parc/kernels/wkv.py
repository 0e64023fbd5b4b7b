"""RWKV-4's WKV without a time loop: two levels of per-channel "attention", stable in log space.

For one channel, with w = -exp(time_decay) < 0 and u = time_first, the WKV output at step t is a
weighted mean of the values v_i (i <= t), weight exp(logit), with logits

    (t - 1 - i) * w + k_i   for i < t        u + k_t   for i = t.

Every pair of sums (numerator over v_i, denominator over 1) is kept as (max, [num, den] scaled by
exp(-max)): the stabilisation of the original RWKV-4 CUDA kernel and of transformers' CPU loop,
whose state (num, den, max) is exactly that for all steps so far. num and den share one tensor
(dim 1), so that each elementwise op handles both.

The sequence is cut into chunks of c steps:
1. inside each chunk, all (t, i <= t) pairs at once; an extra row t = c (steps i < c only) is what
   the whole chunk hands on to later chunks;
2. across chunks, the same computation one level up: chunk n receives chunk m's row c with
   logit (n - 1 - m) * c * w + its max, for all m < n at once (plus the incoming state, if any);
3. the output at step t merges its chunk's row t with the state entering the chunk, decayed t steps.
Level 1 is one batched matmul per channel (`_factored_sums`) when keys and time_first are in a
range where that is exact (MAX_KEY_SPREAD, FIRST_RANGE: always, for a sane model), and the general
form (`_decayed_sums`) otherwise (choosing reads two scalars: one host sync per call on a GPU).
Tensors are channel-first inside, so elementwise ops run over contiguous memory.

Maxima are detached: they cancel between numerator and denominator, so gradients are exact without
differentiating `max`. Only logits minus a maximum that bounds them are exponentiated, so nothing
overflows for any time_decay and time_first whose exp is finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from parc.kernels import fp32_math

# A finite "minus infinity" for masked logits, padding and the empty state: exp(LOG_ZERO - m) == 0
# for any real m, and unlike -inf, LOG_ZERO - LOG_ZERO == 0, so an all-masked row never makes nan.
LOG_ZERO = -1e38
# exp() is evaluated at EXP_FLOOR or above: on CPU, exp of very negative numbers takes a slow path
# (10-35x slower, denormal results). A term raised to exp(-80) ~ 2e-35 from something smaller stays
# >= e^30 below the largest term of its sum (which is exp(0) = 1, or >= exp(-50) in the matmul
# form): far below fp32 precision. Terms that must be exactly 0 (future steps, padding) are
# multiplied by an exact 0 instead.
EXP_FLOOR = -80.0
# The matmul form is exact while, within every chunk, keys lie within MAX_KEY_SPREAD of the largest
# (so every exp(k - kmax) is a normal float) and time_first lies in FIRST_RANGE (so
# exp(u) * exp(k - kmax) neither overflows nor drops below exp(-50)).
MAX_KEY_SPREAD = 30.0
FIRST_RANGE = (-20.0, 20.0)


def factored_chunk(seq_len: int) -> int:
    """Chunk length of the matmul form: about sqrt(seq), so that level 2's (seq / c)^2 stays <= seq, in [16, 32].

    Level 1 costs seq x c multiply-adds per channel but only O(seq) memory; longer chunks make a key
    spread beyond MAX_KEY_SPREAD (and the general form) likelier.
    """
    return min(32, max(16, 2 ** round(math.log2(seq_len) / 2)))


def general_chunk(seq_len: int) -> int:
    """Chunk length of the general form: the power of two nearest (2 seq)^(1/3), balancing seq*c and (seq/c)^2."""
    return 2 ** max(0, round(math.log2(2 * seq_len) / 3))


def _exp(x):
    return torch.exp(x.clamp(min=EXP_FLOOR))


def _pair_logits(decay, first, rows, steps):
    """(channels, rows, steps): (t - 1 - i) * decay for i < t, `first` for i == t (if given), else LOG_ZERO.

    Also returns the (rows, steps) mask of the pairs that count.
    """
    lag = torch.arange(rows, device=decay.device)[:, None] - torch.arange(steps, device=decay.device) - 1
    counted = lag >= (0 if first is None else -1)
    logits = lag * decay[:, None, None]
    if first is not None:
        logits = torch.where(lag == -1, first[:, None, None], logits)
    return torch.where(counted, logits, LOG_ZERO), counted


def _decayed_sums(decay, first, logits, values, rows):
    """For rows t, sums over the pairs of `_pair_logits` of exp(pair logit + logits_i) * values_i.

    decay, first: (channels,), first may be None; logits: (channels, 1, ..., steps); values:
    (channels, 2, ..., steps), numerator and denominator terms. Returns (max (channels, 1, ..., rows),
    detached; sums (channels, 2, ..., rows) scaled by exp(-max)).
    """
    pair_logits, counted = _pair_logits(decay, first, rows, logits.shape[-1])
    pair_logits = pair_logits.view(pair_logits.shape[0], *[1] * (logits.dim() - 2), rows, -1)
    all_logits = pair_logits + logits.unsqueeze(-2)
    top = all_logits.amax(dim=-1).detach()
    weights = _exp(all_logits - top.unsqueeze(-1)) * counted
    return top, (weights * values.unsqueeze(-2)).sum(dim=-1)


def _factored_sums(decay, first, scaled_keys, values, rows):
    """`_decayed_sums` of level 1 as one batched matmul per channel, given exp(k - kmax).

    exp(pair logit + k_i - kmax) = exp(pair logit) * exp(k_i - kmax), kmax the chunk's largest key:
    the first factor is one (rows x steps) matrix per channel, shared by all chunks. Needs the
    ranges of MAX_KEY_SPREAD and FIRST_RANGE: then every row's largest term (the diagonal, or for the
    last row the lag-0 term) is a normal float, and whatever underflows is below fp32 precision
    next to it. scaled_keys, values: (channels, batch, chunks, steps); returns (channels, 2, batch,
    chunks, rows), scaled by exp(-kmax).
    """
    channels, batch, n_chunks, steps = scaled_keys.shape
    terms = torch.stack([scaled_keys * values, scaled_keys], dim=1).view(channels, 2 * batch * n_chunks, steps)
    pair_logits, counted = _pair_logits(decay, first, rows, steps)
    matrix = (_exp(pair_logits) * counted).transpose(1, 2)
    return torch.bmm(terms, matrix).view(channels, 2, batch, n_chunks, rows)


def _merge(parts):
    """Add sums kept as (max, [num, den]), each scaled by exp(-max): returns the same for the total."""
    top = parts[0][0]
    for logit, _ in parts[1:]:
        top = torch.maximum(top, logit)
    top = top.detach()
    total = None
    for logit, sums in parts:
        scaled = _exp(logit - top) * sums
        total = scaled if total is None else total + scaled
    return top, total


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous: the gradient of the (batch, seq, channels)
    output arrives channel-last, and mixing layouts makes every elementwise op of the backward ~50x slower."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def _chunked(x, chunk, pad_value):
    """(batch, seq, channels) -> contiguous (channels, batch, n_chunks, chunk) in fp32, the end padded with `pad_value`."""
    batch, seq_len, channels = x.shape
    n_chunks = -(-seq_len // chunk)
    x = x.float().permute(2, 0, 1).contiguous()
    if n_chunks * chunk > seq_len:
        x = F.pad(x, (0, n_chunks * chunk - seq_len), value=pad_value)
    return x.view(channels, batch, n_chunks, chunk)


def _chunk_sums(w, u, key, value, chunk):
    """Step 1 of `wkv`: chunk length, keys, and (max, [num, den]) of rows 0..chunk of every chunk."""
    seq_len = key.shape[1]
    chunk = min(chunk or factored_chunk(seq_len), seq_len)
    k, v = _chunked(key, chunk, LOG_ZERO), _chunked(value, chunk, 0.0)
    top = k.amax(dim=-1, keepdim=True).detach()
    shifted = k - top  # <= 0; LOG_ZERO at padding
    padded = k.shape[2] * chunk > seq_len
    is_real = (torch.arange(k.shape[2] * chunk, device=key.device) < seq_len).view(-1, chunk)
    spread = -(torch.where(is_real, shifted, 0) if padded else shifted).amin()
    if spread <= MAX_KEY_SPREAD and FIRST_RANGE[0] <= u.min() and u.max() <= FIRST_RANGE[1]:
        # exp(k - kmax) is >= exp(-MAX_KEY_SPREAD) for real keys; padding must give exactly 0.
        scaled_keys = _exp(shifted) * is_real if padded else torch.exp(shifted)
        return (
            chunk,
            k,
            top.unsqueeze(1).expand(-1, -1, -1, -1, chunk + 1),
            _factored_sums(w, u, scaled_keys, v, chunk + 1),
        )
    chunk = min(general_chunk(seq_len), seq_len)
    k, v = _chunked(key, chunk, LOG_ZERO), _chunked(value, chunk, 0.0)
    top, sums = _decayed_sums(w, u, k.unsqueeze(1), torch.stack([v, torch.ones_like(v)], dim=1), chunk + 1)
    return chunk, k, top, sums


@fp32_math
def wkv(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    return_state: bool = False,
    chunk: int | None = None,
):
    """Same arguments and results as transformers' `rwkv_linear_attention` (key, value: (batch, seq, channels)).

    Returns (output in key's dtype, [num, den, max] each (batch, channels) -- the same state, possibly
    scaled by another max -- or None when no state was given nor asked for).
    """
    batch, seq_len, channels = key.shape
    w = -torch.exp(time_decay.float())
    u = time_first.float()

    # 1. Inside each chunk. Row t < chunk: steps i <= t; row `chunk`: the whole chunk, for later ones.
    # inner_max: (channels, 1, batch, chunks, rows); inner: (channels, 2, batch, chunks, rows).
    chunk, k, inner_max, inner = _chunk_sums(w, u, key, value, chunk)
    n_chunks = k.shape[2]

    # 2. Across chunks: what chunks m < n hand to chunk n, merged with the incoming state if any.
    entering = [_decayed_sums(chunk * w, None, inner_max[..., chunk], inner[..., chunk], rows=n_chunks)]
    if state is not None:  # the incoming state reaches chunk n decayed by n * chunk steps
        num, den, log_scale = (s.float().t() for s in state)
        chunk_start = torch.arange(n_chunks, device=key.device) * chunk
        entering.append(
            (
                log_scale[:, None, :, None] + chunk_start * w[:, None, None, None],
                torch.stack([num, den], dim=1)[..., None],
            )
        )
    state_max, state_sums = _merge(entering)  # (channels, 1 or 2, batch, chunks)

    # 3. Step t: its chunk's row t and the state entering the chunk, decayed t steps.
    position = torch.arange(chunk, device=key.device)
    _, total = _merge(
        [
            (inner_max[..., :chunk], inner[..., :chunk]),
            (state_max[..., None] + position * w[:, None, None, None, None], state_sums[..., None]),
        ]
    )
    # Padding rows may sum to 0/0 (nothing real in them): drop them before dividing, not after.
    total = total.reshape(channels, 2, batch, n_chunks * chunk)[..., :seq_len]
    output = _ContiguousGrad.apply(total[:, 0] / total[:, 1]).permute(1, 2, 0).contiguous().to(key.dtype)
    if not (return_state or state is not None):
        return output, None

    # The state after the last real step: the last chunk's real steps (its row `real`: steps i < real,
    # the diagonal there is padding) and the state that entered that chunk, decayed as many steps.
    real = seq_len - (n_chunks - 1) * chunk
    final_max, final = _merge(
        [
            (inner_max[..., -1, real], inner[..., -1, real]),
            (state_max[..., -1] + real * w[:, None, None], state_sums[..., -1]),
        ]
    )
    return output, [final[:, 0].t(), final[:, 1].t(), final_max[:, 0].t()]
