"""parc.training.loss: the labels and the normalisations give the gradients transformers' Trainers give."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from parc import archs
from parc.config import compose
from parc.training.loss import IGNORE_INDEX, normalization, step_labels

ONE_PROCESS = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
ACCUMULATION, ROWS, SEQ = 2, 4, 16


def test_eos_labels_are_ignored_only_when_asked():
    ids = torch.tensor([[5, 0, 7, 0]])
    assert step_labels(ids, 0, True).tolist() == [[5, IGNORE_INDEX, 7, IGNORE_INDEX]]
    assert step_labels(ids, 0, False).tolist() == ids.tolist()
    assert step_labels(ids, None, True).tolist() == ids.tolist()


def gradients(arch: str, mode: str, ids: torch.Tensor) -> dict:
    """What the trainer's loop accumulates for one step (Accelerate's division by the accumulation included)."""
    cfg = compose(["experiment=demo", f"arch={arch}"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    labels = step_labels(ids, 0, True)
    norm = normalization(mode, arch, labels, ACCUMULATION, ONE_PROCESS)
    reported = 0.0
    for micro_ids, micro_labels in zip(ids.chunk(ACCUMULATION), labels.chunk(ACCUMULATION)):
        loss = model(input_ids=micro_ids, labels=micro_labels, **norm.model_kwargs).loss
        (loss * norm.backward_scale / ACCUMULATION).backward()
        reported += float(loss.detach()) * norm.report_scale
    return {"grads": {n: p.grad.clone() for n, p in model.named_parameters()}, "loss": reported, "model": model}


@pytest.fixture(scope="module")
def ids():
    ids = torch.randint(1, 2048, (ROWS, SEQ), generator=torch.Generator().manual_seed(0))
    ids[0, 3] = ids[2, 9] = 0  # two eos tokens: their labels are ignored
    return ids


def test_tokens_is_the_mean_over_every_predicted_token(ids):
    got = gradients("pythia", "tokens", ids)
    model = got["model"]
    model.zero_grad()
    labels = step_labels(ids, 0, True)
    logits = model(input_ids=ids).logits[:, :-1].reshape(-1, 2048)
    mean = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    mean.backward()
    assert got["loss"] == pytest.approx(float(mean.detach()), rel=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], param.grad, rtol=1e-5, atol=1e-8)


# 4.5x counted the labels before the shift (all but the ignored ones) and the loss summed over the predicted ones
COUNTED, PREDICTED = ROWS * SEQ - 2, ROWS * (SEQ - 1) - 2


@pytest.mark.parametrize(
    "arch, factor",
    [
        ("pythia", PREDICTED / COUNTED),
        ("rwkv", PREDICTED / COUNTED),
        ("mamba", ACCUMULATION),  # 4.5x's Mamba: the micro-batch means summed, not divided by the accumulation
    ],
)
def test_hf4_scales_the_gradient_as_transformers_4_5x(ids, arch, factor):
    tokens, hf4 = gradients(arch, "tokens", ids), gradients(arch, "hf4", ids)
    assert hf4["loss"] == pytest.approx(tokens["loss"], rel=1e-6)  # the reported loss is the mean in both modes
    for name, grad in tokens["grads"].items():
        scale = float(grad.abs().max()) * abs(factor)  # float noise is relative to the tensor, not each element
        torch.testing.assert_close(hf4["grads"][name], grad * factor, rtol=1e-4, atol=1e-5 * scale)


def test_the_recipe_defaults_and_a_bad_choice():
    from parc.errors import ParcError
    from parc.training.runconfig import validate

    cfg = compose([])
    assert (cfg.trainer.loss_normalization, cfg.trainer.ignore_eos_labels) == ("tokens", True)
    with pytest.raises(ParcError, match="trainer.loss_normalization='mean' is not one of tokens, hf4"):
        validate(compose(["trainer.loss_normalization=mean"]))
