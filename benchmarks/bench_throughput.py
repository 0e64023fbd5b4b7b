"""B1: training throughput in tokens/s, ours vs the original recipe (transformers.Trainer), per architecture.

Both sides train the demo's tiny model on the same prepared demo batches (micro-batch 8 x accumulation 2,
seq 128) from the same initial weights, through `parc.parity`: ours is `parc.trainer.Trainer.train_step`
with its fast paths, the baseline `transformers.Trainer` configured as the Parc script (transformers' own
forward: Mamba's sequential scan, RWKV's per-step WKV loop). The first step of each run is not timed.
Each record also carries the largest relative loss difference between the two, to show the work was the same.
"""

from __future__ import annotations

import common

ARCHS = ("pythia", "rwkv", "mamba")
TARGETS = {"pythia": 1.0, "rwkv": 3.0, "mamba": 4.0}  # CPU targets (x the original's tokens/s)


def sizes(quick: bool) -> dict:
    """Steps per run (the first is not timed) and alternations; fewer steps where a step is slow (Mamba's
    reference forward takes seconds per step, Pythia's milliseconds)."""
    if quick:
        return {"steps": {"pythia": 30, "rwkv": 10, "mamba": 4}, "repeats": 2}
    return {"steps": {"pythia": 100, "rwkv": 30, "mamba": 10}, "repeats": 5}


def measure_pair(arch: str, root, steps: int) -> tuple[float, float, float]:
    """One alternation: (ours tokens/s, baseline tokens/s, max relative loss difference)."""
    from parc import parity
    from parc.config import Plan
    from parc.data.stream import BatchPlan, ensure_prepared

    cfg = parity.parity_config(["experiment=demo", f"arch={arch}", f"paths.root={root}"], steps)
    stream = ensure_prepared(cfg)
    batches = BatchPlan.from_config(cfg, stream)
    plan = Plan.build(cfg)
    ours, initial = parity.run_ours(cfg, batches, stream.tokenizer_dir)
    reference = parity.run_reference(cfg, batches, stream.tokenizer_dir, initial, plan.accumulation)
    worst = max(parity.relative(a, b) for a, b in zip(ours.losses, reference.losses))
    return ours.tokens_per_s(plan.tokens_per_step, skip=1), reference.tokens_per_s(plan.tokens_per_step, skip=1), worst


def run(args) -> list:
    root = common.demo_root(args.work)
    size = sizes(args.quick)
    records = []
    for arch in ARCHS:
        runs, diffs = {"ours": [], "baseline": []}, []
        for _ in range(size["repeats"]):  # each pair runs ours then the baseline: alternating
            ours, baseline, diff = measure_pair(arch, root, size["steps"][arch])
            runs["ours"].append(ours), runs["baseline"].append(baseline), diffs.append(diff)
        record = common.compare("B1", "tokens/s", runs, arch=arch, size="demo (tiny), 16 x 128 tokens/step",
                                timed_steps=size["steps"][arch] - 1, target=TARGETS[arch],
                                max_rel_loss_diff=float(f"{max(diffs):.2e}"))
        record["met"] = record["ratio"] >= TARGETS[arch]
        records.append(common.emit(record))
    return records


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
