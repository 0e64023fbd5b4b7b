"""Per-word surprisal with the Parc paper's conventions, one batched forward per batch of stimuli.

Conventions (run_models/calculate_surprisal.py, reproduced exactly):
- the stimulus line is tokenized once, with a special marker token in place of the asterisks after moving
  the space before the target inside it (`ctx *w*` -> `ctx[M] w[M]`), so the context and the target (with
  its leading space) are tokenized as the paper's tokenizer saw them, special tokens the tokenizer adds
  included; a target decoded without a leading space is re-encoded with one, and a sentencepiece lone `▁`
  before a `▁`-word is dropped, as there;
- the BOS id (`bos_token_id`, else `eos_token_id`; `<|endoftext|>` = 0 for Parc) is prepended unless the
  context already starts with BOS or EOS;
- surprisal = -log p in nats (fp32 log-softmax), summed in float64 over the target's tokens; `NumTokens`.

Batching: stimuli are grouped by their exact input length (context + target minus its last token), so a
batch has no padding and needs no attention mask: Mamba and RWKV in transformers ignore masks, and right or
left padding would change their states. Each group is cut into batches of about `token_budget` tokens; one
forward per batch returns the logits of the last (longest target) positions only (`logits_to_keep`), and
every target token's log-probability is gathered from them. The result equals the paper's per-token loop
(parc.study.phases.surprisal_reference) to float rounding; tests/test_surprisal.py checks <= 1e-4 nats on every stimulus.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from parc.errors import ParcError
from parc.study.phases.stimuli import Stimulus

MARKER = "[!StimulusMarker!]"
DEFAULT_TOKEN_BUDGET = 8192  # tokens per forward: big enough to amortise per-call overhead, small for memory
NATS_PER_BIT = math.log(2.0)


@dataclass(frozen=True)
class Encoded:
    context: Tuple[int, ...]  # BOS first
    target: Tuple[int, ...]
    sentence: str  # the paper's `Sentence` column: decode(context without its first token + target)
    target_text: str  # the paper's `TargetWords` column: decode(target), leading space included

    @property
    def input_length(self) -> int:
        return len(self.context) + len(self.target) - 1


def bos_id(tokenizer) -> int:
    for name in ("bos_token_id", "cls_token_id", "eos_token_id", "sep_token_id"):  # the paper's fallbacks
        value = getattr(tokenizer, name, None)
        if value is not None:
            return value
    raise ParcError(
        f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no BOS/EOS token to prepend: "
        "score with a tokenizer that defines bos_token or eos_token"
    )


class StimulusEncoder:
    """Token ids of stimuli exactly as calculate_surprisal.py derived them (see the module docstring)."""

    def __init__(self, tokenizer):
        from tokenizers import AddedToken

        self.tokenizer = copy.deepcopy(tokenizer)  # the marker must not leak into the caller's tokenizer
        self.tokenizer.add_tokens([AddedToken(MARKER, special=True)], special_tokens=True)
        self.marker = self.tokenizer.convert_tokens_to_ids(MARKER)
        self.bos = bos_id(tokenizer)
        self.eos = getattr(tokenizer, "eos_token_id", None)
        self.token_of = {index: token for token, index in tokenizer.get_vocab().items()}

    def encode(self, stimulus: Stimulus) -> Encoded:
        tok = self.tokenizer
        spaced = (
            f"{stimulus.context}{MARKER} {stimulus.target}{MARKER}"
            if stimulus.context
            else f"{MARKER}{stimulus.target}{MARKER}"
        )
        ids = tok.encode(spaced)
        first, second = [i for i, token in enumerate(ids) if token == self.marker][:2]
        context = ids[:first]
        if not context or context[0] not in (self.bos, self.eos):
            context = [self.bos] + context
        target = ids[first + 1 : second]
        spaced_target = f"{MARKER} " in spaced
        if spaced_target and not tok.decode(target).startswith(" "):
            target = tok.encode(" " + tok.decode(target))
            for special in (self.bos, self.eos):  # list.remove: the first occurrence, as the paper
                if special in target:
                    target.remove(special)
        if spaced_target and len(target) > 1 and tok.decode(target).startswith(" "):
            head, nxt = self.token_of.get(target[0], ""), self.token_of.get(target[1], "")
            if (head == "▁" and nxt.startswith("▁")) or (head == " " and nxt.startswith(" ")):
                target = target[1:]
        if not target:
            raise ParcError(f"stimulus {stimulus.id} ({stimulus.sentence[:60]!r}): its target has no tokens")
        sentence_ids = context[1:] + target
        if sentence_ids and sentence_ids[-1] == self.eos:
            sentence_ids = sentence_ids[:-1]
        return Encoded(tuple(context), tuple(target), tok.decode(sentence_ids), tok.decode(target))

    def encode_all(self, stimuli: Sequence[Stimulus]) -> List[Encoded]:
        return [self.encode(stimulus) for stimulus in stimuli]


def check_lengths(encoded: Sequence[Encoded], max_length: Optional[int], where: str) -> None:
    """Refuse a stimulus longer than the model's context (the paper truncated it, one window per token)."""
    if not max_length:
        return
    for index, item in enumerate(encoded):
        if item.input_length > max_length:
            raise ParcError(
                f"{where} stimulus {index} has {item.input_length} tokens, more than the model's "
                f"context of {max_length}: shorten it"
            )


def _keeps_logits(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def batches_by_length(encoded: Sequence[Encoded], token_budget: int) -> List[List[int]]:
    """Indices of stimuli grouped by exact input length, cut into batches of about `token_budget` tokens."""
    groups = defaultdict(list)
    for index, item in enumerate(encoded):
        groups[item.input_length].append(index)
    batches = []
    for length in sorted(groups):
        per_batch = max(1, token_budget // max(length, 1))
        members = groups[length]
        batches.extend(members[i : i + per_batch] for i in range(0, len(members), per_batch))
    return batches


def token_logprobs(model, batch: Sequence[Encoded], device) -> List[np.ndarray]:
    """log p of every target token of a batch of equal-length stimuli, from one forward pass (fp32)."""
    import torch

    keep = max(len(item.target) for item in batch)
    inputs = torch.tensor([item.context + item.target[:-1] for item in batch], dtype=torch.long, device=device)
    extra = {"logits_to_keep": keep} if _keeps_logits(model) else {}
    with torch.inference_mode():
        logits = model(input_ids=inputs, use_cache=False, **extra).logits[:, -keep:, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        rows, columns, targets = [], [], []
        for row, item in enumerate(batch):  # target token j is predicted at kept position keep - T + j
            rows += [row] * len(item.target)
            columns += range(keep - len(item.target), keep)
            targets += item.target
        picked = logprobs[torch.tensor(rows), torch.tensor(columns), torch.tensor(targets)].double().cpu().numpy()
    out, start = [], 0
    for item in batch:
        out.append(picked[start : start + len(item.target)])
        start += len(item.target)
    return out


def score(model, encoded: Sequence[Encoded], token_budget: int = DEFAULT_TOKEN_BUDGET, progress=None) -> np.ndarray:
    """Surprisal in nats of each encoded stimulus (summed over its target tokens), in input order."""
    device = next(model.parameters()).device
    surprisal = np.empty(len(encoded), dtype=np.float64)
    for indices in batches_by_length(encoded, token_budget):
        for index, logprobs in zip(indices, token_logprobs(model, [encoded[i] for i in indices], device)):
            surprisal[index] = -float(np.sum(logprobs))
        if progress is not None:
            progress(len(indices))
    return surprisal
