"""E2: Pythia's memorization score of N training sequences: ours (`parc.study.evaluations.greedy`: one teacher-forced pass,
then cached lockstep decoding only where a sequence diverged) vs `model.generate`-based scoring, same scores.

Two baselines: `generate(use_cache=False)` batched, exactly as Pythia's `eval_memorization.py` ran it, and
`generate` with its KV cache (transformers' default; batch size 1 for RWKV, whose batched cached step is
wrong). Two models per architecture: a tiny model trained on the N sequences until it memorized most of them
(the regime where the teacher-forced pass settles sequences at once), and the same model at its random
initialisation (nothing memorized: every sequence needs all its greedy steps). Each line reports whether the
scores were identical and the memorized fraction.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import common

PROMPT = CONTINUATION = 32


def demo_sequences(work, count: int) -> np.ndarray:
    from parc.data.stream import PackedStream, read_manifest

    directory = common.demo_root(work) / "data" / "demo-parc-128"
    stream = PackedStream(directory, read_manifest(directory))
    return stream.sequences(np.arange(count))[:, : PROMPT + CONTINUATION]


def memorizing_model(arch: str, sequences: np.ndarray, steps: int):
    from parc import archs
    from parc.config import compose

    cfg = compose(["experiment=demo", f"arch={arch}"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    archs.get_spec(arch).apply_fast_path(model, "auto", "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.from_numpy(sequences)
    for _ in range(steps):
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), initial


def run(args) -> list:
    from parc.study.evaluations.greedy import generate_continuations, greedy_continuations

    count = 8 if args.smoke else 64 if args.quick else 256
    batch_size = 64
    sequences = demo_sequences(args.work, count)
    prompts, truth = sequences[:, :PROMPT], sequences[:, PROMPT:]
    records = []
    for arch in ["pythia"] if args.quick or args.smoke else ["pythia", "mamba", "rwkv"]:
        model, initial = memorizing_model(arch, sequences, 2 if args.smoke else 200 if args.quick else 300)
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        for regime, weights in (("memorizing", trained), ("random init", initial)):
            model.load_state_dict(weights)
            scores = {}

            def timed(name, fn):
                def measure():
                    started = time.perf_counter()
                    scores[name] = fn()
                    return time.perf_counter() - started

                return measure

            ours = timed("ours", lambda: greedy_continuations(model, prompts, truth, batch_size).tokens)
            cached = timed(
                "cached",
                lambda: generate_continuations(
                    model, prompts, CONTINUATION, 1 if arch == "rwkv" else batch_size, use_cache=True
                ),
            )
            pythia = timed(
                "pythia", lambda: generate_continuations(model, prompts, CONTINUATION, batch_size, use_cache=False)
            )
            runs = common.alternate(
                {"ours": ours, "cached": cached, "pythia": pythia}, 1 if args.smoke else 2 if args.quick else 3
            )
            memorized = float((scores["ours"] == truth).all(axis=1).mean())
            for baseline, label in (
                ("pythia", "generate(use_cache=False), as Pythia's script"),
                ("cached", "generate with KV cache"),
            ):
                same = float((scores["ours"] == scores[baseline]).all(axis=1).mean())
                record = common.compare(
                    "E2",
                    "seconds",
                    {"ours": runs["ours"], "baseline": runs[baseline]},
                    better="lower",
                    arch=arch,
                    regime=regime,
                    sequences=count,
                    baseline_is=label,
                    memorized=round(memorized, 3),
                    same_scores=same,
                )
                record["met"] = record["ratio"] >= 10
                records.append(common.emit(record))
    return records


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
