"""The loss of one optimizer step as transformers' Trainer computes it: which labels count, and the normalisation.

Labels are the input ids, except that ids equal to the eos token are ignored when `trainer.ignore_eos_labels`
(Parc's `DataCollatorForLanguageModeling(mlm=False)` with pad = eos turns every label equal to the pad id
into -100; under the Parc packing that only happens where a document contains a literal `<|endoftext|>`).

`trainer.loss_normalization`:
- ``tokens`` (default): the mean cross-entropy over every predicted token of the global batch, whatever the
  micro-batching and world size. This is transformers 5's Trainer (`num_items_in_batch` = the count of
  `labels[..., 1:]` that are not ignored, summed over the accumulation and the processes), and what the
  recipe means; `python -m parc.parity` holds us to it.
- ``hf4``: the gradients of transformers 4.50-4.57, which the Parc script needs (it passes `seed=` to the
  collator) and ran. Their Trainer counted `num_items_in_batch` over the unshifted labels, so the
  loss was the summed cross-entropy / (tokens incl. each sequence's unpredicted first one): x (S-1)/S.
  And MambaForCausalLM accepted **kwargs but computed a plain mean, ignoring that count, while the Trainer
  (seeing **kwargs) skipped its division by the accumulation steps: Parc-Mamba's gradient was the sum of
  its 16 micro-batch means, 16x the mean gradient, before clipping at 1.0. Per process, as 4.5x did.
  With `trainer.weight_decay_rule=hf4.50` (for 4.50-4.52, see `parc.training.optim`) this matched the real
  transformers 4.51.3 Trainer to ~1e-7 in loss and grad norm for all three architectures (BENCHMARKS.md).
The reported loss is the mean cross-entropy over the predicted tokens in both modes (4.5x logged the
scaled value: x (S-1)/S, and x accumulation for Mamba).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

IGNORE_INDEX = -100  # the label transformers' losses skip
HF4_MEAN_LOSS_ARCHS = frozenset({"mamba"})  # 4.5x models whose loss ignored num_items_in_batch


def step_labels(ids: torch.Tensor, eos_token_id: Optional[int], ignore_eos: bool) -> torch.Tensor:
    """Labels for `ids` (the model shifts them): the ids, with eos ignored as Parc's collator (pad = eos) did."""
    if not ignore_eos or eos_token_id is None:
        return ids
    return ids.masked_fill(ids == eos_token_id, IGNORE_INDEX)


@dataclass(frozen=True)
class Normalization:
    """How this step's micro-batch losses become gradients and the reported loss.

    The model is called with `model_kwargs`; `backward_scale` multiplies its loss before
    `accelerator.backward` (which divides by the accumulation steps; DDP then averages over processes);
    the sum of the micro-batch losses, times `report_scale`, summed over processes, is the step's loss.
    """

    model_kwargs: dict
    backward_scale: float
    report_scale: float


def normalization(mode: str, arch: str, labels: torch.Tensor, accumulation: int, accelerator) -> Normalization:
    """The normalisation of a step whose labels on this process are `labels` [rows, seq_len]."""
    world = accelerator.num_processes
    predicted = int((labels[:, 1:] != IGNORE_INDEX).sum())  # what the shifted loss averages over
    if mode == "tokens":
        if world > 1:  # every process divides by the global count, as average_tokens_across_devices does
            predicted = int(accelerator.reduce(torch.tensor(predicted, device=accelerator.device), "sum").item())
        return Normalization({"num_items_in_batch": max(predicted, 1)}, accumulation * world, 1.0)
    if arch in HF4_MEAN_LOSS_ARCHS:  # micro-batch means, summed and not divided: x accumulation
        return Normalization({}, float(accumulation), 1.0 / (accumulation * world))
    counted = int((labels != IGNORE_INDEX).sum())  # 4.5x's count, over the unshifted labels
    return Normalization(
        {"num_items_in_batch": max(counted, 1)}, float(accumulation), max(counted, 1) / max(predicted, 1) / world
    )
