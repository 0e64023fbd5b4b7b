"""B1: training throughput in tokens/s, ours vs the original recipe (transformers.Trainer), per architecture.

Both sides train the demo's tiny model on the same prepared demo batches (micro-batch 8 x accumulation 2,
seq 128) from the same initial weights, through `parc.parity`: ours is `parc.training.trainer.Trainer.train_step`
with its fast paths, the baseline `transformers.Trainer` configured as the Parc script (transformers' own
forward: Mamba's sequential scan, RWKV's per-step WKV loop). The first step of each run is not timed.
Each record also carries the largest relative loss difference between the two, to show the work was the same.

Two shapes, the same 2,048 tokens per step: the demo's (micro-batch 8 x seq 128) and the Parc sequence
length (micro-batch 1 x seq 1024). At seq 128 the tiny model's matmuls and softmax are most of a step, so
a recurrence, however fast, can only win so much there (BENCHMARKS.md gives the floor); at seq 1024 the
per-time-step loops of the originals cost what they cost in the real recipe.
"""

from __future__ import annotations

import common

ARCHS = ("pythia", "rwkv", "mamba")
TARGETS = {"pythia": 1.0, "rwkv": 3.0, "mamba": 4.0}  # CPU targets (x the original's tokens/s)


SEQ_1024 = ["data.seq_len=1024", "trainer.micro_batch_size=1", "trainer.global_batch_size=2"]
# what the tiny configs need for 1024 positions (the real ones have them)
CONTEXT_1024 = {
    "pythia": ["arch.tiny.max_position_embeddings=1024"],
    "rwkv": ["arch.tiny.context_length=1024"],
    "mamba": [],
}
# shape -> (overrides per arch, what the record says); both 2,048 tokens per step, accumulation 2
SHAPES = {
    "demo": ({arch: [] for arch in ARCHS}, "demo (tiny), 16 x 128 tokens/step"),
    "seq1024": (
        {arch: SEQ_1024 + CONTEXT_1024[arch] for arch in ARCHS},
        "tiny model at the Parc seq length, 2 x 1024 tokens/step",
    ),
}


def sizes(args) -> dict:
    """Steps per run (the first is not timed) and alternations, per shape; fewer steps where a step is slow
    (Mamba's reference forward takes seconds per step, Pythia's milliseconds)."""
    if args.smoke:
        return {"steps": {"demo": {"pythia": 2}}, "repeats": 1}
    if args.quick:
        return {
            "steps": {"demo": {"pythia": 30, "rwkv": 10, "mamba": 4}, "seq1024": {"pythia": 10, "rwkv": 4, "mamba": 3}},
            "repeats": 2,
        }
    return {
        "steps": {"demo": {"pythia": 100, "rwkv": 30, "mamba": 10}, "seq1024": {"pythia": 30, "rwkv": 10, "mamba": 5}},
        "repeats": 5,
    }


def measure_pair(arch: str, root, steps: int, overrides: list) -> tuple[float, float, float]:
    """One alternation: (ours tokens/s, baseline tokens/s, max relative loss difference)."""
    from parc.data.prepare import ensure_prepared
    from parc.data.stream import BatchPlan
    from parc.training import parity
    from parc.training.runconfig import Plan

    cfg = parity.parity_config(["experiment=demo", f"arch={arch}", f"paths.root={root}", *overrides], steps)
    stream = ensure_prepared(cfg)
    batches = BatchPlan.from_config(cfg, stream)
    plan = Plan.build(cfg)
    ours, initial = parity.run_ours(cfg, batches, stream.tokenizer_dir)
    reference = parity.run_reference(cfg, batches, stream.tokenizer_dir, initial, plan.accumulation)
    worst = max(parity.relative(a, b) for a, b in zip(ours.losses, reference.losses))
    return ours.tokens_per_s(plan.tokens_per_step, skip=1), reference.tokens_per_s(plan.tokens_per_step, skip=1), worst


def run(args) -> list:
    root = common.demo_root(args.work)
    size = sizes(args)
    records = []
    for shape, steps_of in size["steps"].items():
        overrides, described = SHAPES[shape]
        for arch, steps in steps_of.items():
            runs, diffs = {"ours": [], "baseline": []}, []
            for _ in range(size["repeats"]):  # each pair runs ours then the baseline: alternating
                ours, baseline, diff = measure_pair(arch, root, steps, overrides[arch])
                runs["ours"].append(ours), runs["baseline"].append(baseline), diffs.append(diff)
            record = common.compare(
                "B1",
                "tokens/s",
                runs,
                arch=arch,
                size=described,
                timed_steps=steps - 1,
                target=TARGETS[arch],
                max_rel_loss_diff=float(f"{max(diffs):.2e}"),
            )
            record["met"] = record["ratio"] >= TARGETS[arch]
            records.append(common.emit(record))
    return records


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
