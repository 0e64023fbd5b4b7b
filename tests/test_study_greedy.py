"""Greedy continuations (the memorization engine) equal `model.generate`, and find exactly the planted sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parc import archs
from parc.config import compose
from parc.study.evaluations.greedy import generate_continuations, greedy_continuations

PROMPT, CONTINUATION, VOCAB = 10, 10, 512


def planted_model(arch: str, planted: np.ndarray):
    """A tiny model of `arch` trained (fast path, AdamW) until it reproduces the planted sequences."""
    cfg = compose(["experiment=demo", f"arch={arch}"])
    model = archs.build_model(cfg.arch, VOCAB, seed=0)
    spec = archs.get_spec(arch)
    spec.apply_fast_path(model, "auto", "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.from_numpy(planted)
    torch.manual_seed(0)
    for _ in range(40):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def certified_tie(model, prompt, ours, theirs, tolerance=1e-4) -> bool:
    """At the first position where two greedy decodings differ, the two tokens' logits tie to within rounding."""
    j = int(np.argmax(ours != theirs))
    prefix = torch.from_numpy(np.concatenate([prompt, ours[:j]]))[None]
    with torch.inference_mode():
        logits = model(input_ids=prefix).logits[0, -1]
    return (
        abs(float(logits[ours[j]] - logits[theirs[j]])) < tolerance
        and float(logits.max() - logits[ours[j]]) < tolerance
    )


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is as fast, and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("arch", ["pythia", "mamba", "rwkv"])
def test_greedy_finds_exactly_the_planted_sequences_and_equals_generate(arch):
    rng = np.random.default_rng(1)
    length = PROMPT + CONTINUATION
    planted = rng.integers(1, VOCAB, (4, length))
    model = planted_model(arch, planted)
    unseen = rng.integers(1, VOCAB, (7, length))
    # A planted prompt with an unseen continuation: the model reproduces its training text, not this one.
    half = np.concatenate([planted[:1, :PROMPT], rng.integers(1, VOCAB, (1, CONTINUATION))], axis=1)
    sequences = np.concatenate([unseen[:3], planted[:2], half, unseen[3:], planted[2:]])
    is_planted = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    prompts, truth = sequences[:, :PROMPT], sequences[:, PROMPT:]

    ours = greedy_continuations(model, prompts, truth, batch_size=5)  # batches mixing both kinds, one partial

    archs.get_spec(arch).apply_fast_path(model, "reference", "cpu")  # the reference runs transformers' own forward
    # transformers' batched single-token RWKV step is wrong, so its reference decodes one prompt at a time.
    reference = generate_continuations(model, prompts, CONTINUATION, batch_size=1 if arch == "rwkv" else 6)
    differ = [i for i in range(len(sequences)) if not np.array_equal(ours.tokens[i], reference[i])]
    assert all(certified_tie(model, prompts[i], ours.tokens[i], reference[i]) for i in differ), differ
    assert len(differ) <= 1
    np.testing.assert_array_equal(ours.first_mismatch == CONTINUATION, is_planted)
    matches = reference == truth
    expected_first = np.where(matches.all(axis=1), CONTINUATION, np.argmin(matches, axis=1))
    np.testing.assert_array_equal(
        ours.first_mismatch[[i for i in range(12) if i not in differ]],
        expected_first[[i for i in range(12) if i not in differ]],
    )
    assert (ours.tokens[5] == planted[0, PROMPT:]).mean() > 0.5  # the half-planted one continues from training


def test_rwkv_batched_generate_is_what_greedy_avoids():
    """The transformers bug the design works around: batched cached RWKV decoding disagrees with batch size 1."""
    cfg = compose(["experiment=demo", "arch=rwkv"])
    model = archs.build_model(cfg.arch, VOCAB, seed=0).eval()
    prompts = np.random.default_rng(0).integers(1, VOCAB, (3, PROMPT))
    try:
        batched = generate_continuations(model, prompts, 4, batch_size=3)
    except RuntimeError:  # shape error: also wrong
        return
    single = generate_continuations(model, prompts, 4, batch_size=1)
    ours = greedy_continuations(model, prompts, np.zeros((3, 4), dtype=np.int64), batch_size=3).tokens
    np.testing.assert_array_equal(ours, single)
    assert not np.array_equal(batched, single)
