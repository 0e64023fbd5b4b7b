"""The Parc paper's way of scoring, kept as the reference parc.surprisal is tested and benchmarked against.

calculate_surprisal.py ran one full forward pass per target token, at batch size 1, without a cache:
for token k of the target, the input is the context (BOS first) plus the target's first k tokens, and the
surprisal of token k is -log softmax(logits at the last position)[token]. This module does exactly that,
written plainly, on ids from parc.study.phases.surprisal.StimulusEncoder.
"""

from __future__ import annotations

from typing import List, Sequence

from parc.study.phases.surprisal import Encoded


def loop_surprisal(model, item: Encoded) -> float:
    """Surprisal (nats) of one stimulus: one forward per target token, batch 1, no cache."""
    import torch

    device = next(model.parameters()).device
    context = list(item.context)
    total = 0.0
    for token in item.target:
        with torch.no_grad():
            # the paper's call: the model's default use_cache, but nothing is reused from one call to the next
            logits = model(torch.tensor([context], device=device), return_dict=True).logits[:, -1, :]
        probabilities = torch.softmax(logits.float(), dim=-1)
        total += -torch.log(probabilities[0, token]).item()
        context.append(token)
    return total


def loop_all(model, encoded: Sequence[Encoded]) -> List[float]:
    return [loop_surprisal(model, item) for item in encoded]
