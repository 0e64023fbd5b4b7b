"""Greedy continuations of many prompts at once, with few forward passes: the engine of the memorization score.

Pythia's memorization protocol decodes 32 greedy tokens after a 32-token prompt taken from a training
sequence and compares them with the sequence's true next 32 tokens. `greedy_continuations` computes the same
greedy tokens without decoding token by token:

1. One teacher-forced forward over prompt + true continuation decides, for every sequence of the batch, how
   many leading continuation tokens greedy decoding reproduces: the argmax after the prompt and the first j
   true tokens *is* greedy's token j as long as tokens 0..j-1 matched. A fully memorized sequence is finished
   here, and every other one has its greedy tokens up to and including its first mismatch.
2. The rest are decoded with the model's cache, in lockstep from the smallest first mismatch of the batch:
   one forward over prompt + the known prefix, then one cached single-token step per remaining position
   (a row keeps its known tokens where it has them). That is greedy decoding as `generate` does it, minus its
   per-step machinery, and minus everything for sequences the first pass settled.

transformers' RWKV single-token step is wrong at batch size > 1 (its shifted state broadcasts to (B, B, V)
logits), so RWKV rows take their cached steps one row at a time; the batched teacher-forced pass, where most
of the memorized work is, uses full-sequence forwards, which are right. EOS is an ordinary token: nothing is
suppressed and nothing stops early. Teacher-forced and incremental logits are the same function computed in
different orders, so a greedy token can differ from `model.generate`'s only where the two best logits tie to
within rounding; the tests check that every difference is such a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GreedyResult:
    tokens: np.ndarray  # int64 [N, C]: greedy continuation of each prompt
    first_mismatch: np.ndarray  # int64 [N]: leading continuation tokens reproduced (C = all: memorized)
    forwards: int  # forward passes run (batches x passes), for benchmarks


def tail_argmax(model, window: torch.Tensor, count: int) -> torch.Tensor:
    """Argmax of the next-token logits at the last `count` positions of `window` [B, T] -> [B, count]."""
    logits = model(input_ids=window, logits_to_keep=count, use_cache=False).logits
    return logits.argmax(dim=-1)


def first_true(mask: torch.Tensor, default: int) -> torch.Tensor:
    """Index of the first True of each row of `mask` [B, C], or `default` where a row has none."""
    return torch.where(
        mask.any(dim=1), mask.to(torch.int8).argmax(dim=1), torch.full_like(mask[:, 0], default, dtype=torch.long)
    )


def _decode_batch(model, prompts: torch.Tensor, targets: torch.Tensor) -> tuple:
    """Greedy tokens [B, C], leading matches [B] and the number of forwards for one batch."""
    count = targets.shape[1]
    window = torch.cat([prompts, targets[:, :-1]], dim=1)  # the last continuation token is never an input
    tokens = tail_argmax(model, window, count)
    first_mismatch = first_true(tokens != targets, count)
    tokens, steps = complete_greedy(model, prompts, tokens, first_mismatch)
    return tokens, first_mismatch, 1 + steps


def complete_greedy(model, prompts: torch.Tensor, tokens: torch.Tensor, first_mismatch: torch.Tensor) -> tuple:
    """Greedy tokens [B, C] from a teacher-forced pass: `tokens` holds its argmax after the prompt and the first j
    true tokens, `first_mismatch` its leading matches. Rows that matched all C are greedy's already (no decoding);
    the others are decoded from their first mismatch. Returns the tokens and the number of forwards run."""
    count = tokens.shape[1]
    final = torch.clamp(first_mismatch + 1, max=count)  # tokens[:, :final] are greedy's
    todo = (final < count).nonzero().squeeze(1)
    forwards = 0
    if len(todo):
        groups = [todo[i : i + 1] for i in range(len(todo))] if batched_step_broken(model) else [todo]
        for rows in groups:
            tokens[rows], steps = _decode_on(model, prompts[rows], tokens[rows], final[rows])
            forwards += steps
    return tokens, forwards


def batched_step_broken(model) -> bool:
    """transformers' RWKV single-token step broadcasts its state to (B, B, V) logits at batch size > 1."""
    return getattr(model.config, "model_type", None) == "rwkv"


def _next_cache(out) -> dict:
    """The keyword that hands a forward's cache to the next one (its name differs between architectures)."""
    for name in ("cache", "past_key_values", "state"):  # newest name first
        if getattr(out, name, None) is not None:
            return {name: getattr(out, name)}
    raise ValueError(f"{type(out).__name__} returned no cache: greedy decoding needs use_cache support")


def _decode_on(model, prompts: torch.Tensor, tokens: torch.Tensor, final: torch.Tensor) -> tuple:
    """Greedy decoding of rows whose tokens[:, :final] are known, in lockstep from the smallest `final`.

    One forward over prompt + the shared known prefix, then one cached single-token step per position; a row
    keeps its known token where it has one. Returns the tokens and the number of forwards.
    """
    count = tokens.shape[1]
    start = int(final.min())
    out = model(input_ids=torch.cat([prompts, tokens[:, :start]], dim=1), use_cache=True, logits_to_keep=1)
    forwards = 1
    for j in range(start, count):
        choice = out.logits[:, -1].argmax(dim=-1)
        tokens[:, j] = torch.where(final > j, tokens[:, j], choice)
        if j + 1 < count:
            out = model(input_ids=tokens[:, j : j + 1], use_cache=True, **_next_cache(out))
            forwards += 1
    return tokens, forwards


def greedy_continuations(model, prompts, targets, batch_size: int = 64) -> GreedyResult:
    """Greedy continuation (len(targets[0]) tokens, no token suppressed, EOS an ordinary token) of each prompt.

    `prompts` [N, P] and `targets` [N, C] (the true continuations) are token ids; the model must be in eval mode.
    """
    device = next(model.parameters()).device
    prompts = torch.as_tensor(np.asarray(prompts), dtype=torch.long)
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if prompts.ndim != 2 or targets.ndim != 2 or len(prompts) != len(targets):
        raise ValueError("prompts and targets must be [N, P] and [N, C] token arrays of the same N")
    tokens, first, forwards = [], [], 0
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = slice(start, start + batch_size)
            t, f, n = _decode_batch(model, prompts[batch].to(device), targets[batch].to(device))
            tokens.append(t.cpu())
            first.append(f.cpu())
            forwards += n
    count = targets.shape[1]
    return GreedyResult(
        torch.cat(tokens).numpy() if tokens else np.zeros((0, count), dtype=np.int64),
        torch.cat(first).numpy() if first else np.zeros(0, dtype=np.int64),
        forwards,
    )


def generate_continuations(model, prompts, count: int, batch_size: int = 64, use_cache: bool = True) -> np.ndarray:
    """The reference: `model.generate` greedy decoding of `count` tokens after each prompt ([N, count]).

    EOS is an ordinary token (no early stop, nothing suppressed), as in `greedy_continuations`. With
    `use_cache=True` RWKV must run at batch size 1 (its batched single-token step is wrong).
    """
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False, max_new_tokens=count, eos_token_id=[], pad_token_id=0, use_cache=use_cache
    )
    device = next(model.parameters()).device
    prompts = torch.as_tensor(np.asarray(prompts), dtype=torch.long)
    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size].to(device)
            generated = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), generation_config=config)
            out.append(generated[:, prompts.shape[1] :].cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, count), dtype=np.int64)
