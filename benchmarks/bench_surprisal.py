"""S1: surprisal throughput (stimuli/s) of parc.surprisal's batched scoring vs the paper's per-token loop.

Both sides score the same stimuli (the demo NaWoCo set, built by parc.stimuli into --work) with the same
model and weights, and must give the same numbers (each record carries the largest difference, nats).
Ours: `StimulusEncoder.encode_all` + `surprisal.score` (one forward per batch of equal-length stimuli) on
the model as parc.surprisal loads it (ModelCache: Parc's fast path). Baseline: `paper_loop.loop_all` on the
same ids and the same seeded weights on transformers' own forward (calculate_surprisal.py: one full
forward per target token, batch 1, no cache). Sizes: the demo models (tiny, vocab 2048: the loop is bound by per-call overhead) for
all three architectures, and a Parc-size Pythia-160m (arch.size=full, vocab 50277; compute-bound on CPU; the
demo tokenizer's ids are valid in it), where the record also gives the forward FLOPs, the FLOP rate reached
and its fraction of this machine's measured fp32 matmul peak (a 2048^3 torch matmul). Weights are a seeded
random init: speed does not depend on them.
"""

from __future__ import annotations

import time

import common

ARCHS = ("pythia", "mamba", "rwkv")
PAPER_STIMULI = 200_000  # all_stims.stims: train 100k + val 50k + test 50k, before the last filters
PAPER_RUNS = 180  # 18 Parc models x 10 checkpoints
A100_FP32_FLOPS = 19.5e12  # dense fp32 (no TF32), as the paper scored


def stimuli_file(work):
    from parc.config import compose
    from parc.study.phases.stimulus_sets import DEFAULT_SIZES, build_stimuli

    out = work / "stimuli" / "demo.stims"
    if not out.is_file():
        root = common.demo_root(work)
        build_stimuli(
            compose(["experiment=demo", f"paths.root={root}"]), out, dict(DEFAULT_SIZES), progress=lambda _: None
        )
    return out


def matmul_peak(repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - started)
    return 2 * 2048**3 / common.median(seconds)


def forward_flops(model, encoded, per_call: bool) -> float:
    """Matmul FLOPs of the forwards one side runs (2 x weights per token; the head on the positions it keeps:
    all of them for the paper's call, the targets' for ours; attention scores for Pythia)."""
    import torch

    head = model.get_output_embeddings()
    body = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    config = model.config
    layers, width = getattr(config, "num_hidden_layers", 0), getattr(config, "hidden_size", 0)
    attention = config.model_type == "gpt_neox"
    total = 0.0
    for item in encoded:
        lengths = range(len(item.context), len(item.context) + len(item.target)) if per_call else [item.input_length]
        for length in lengths:
            total += 2 * body * length + (4 * layers * width * length**2 if attention else 0)
            total += 2 * head.weight.numel() * (length if per_call else len(item.target))
    return total


def measure(arch: str, size: str, count: int, pairs: int, work, flops: bool) -> dict:
    import numpy as np
    import torch

    from parc.archs import build_model
    from parc.config import compose
    from parc.data.tokenizer import load_saved_tokenizer
    from parc.study.phases.stimuli import read_stimuli
    from parc.study.phases.surprisal import StimulusEncoder, score
    from parc.study.phases.surprisal_reference import loop_all
    from parc.study.sources.model_cache import install_fast_path

    overrides = ["experiment=demo", f"arch={arch}"] + (
        ["arch.size=full", "data.vocab_size=50277"] if size == "parc" else []
    )
    cfg = compose(overrides)
    # The same seeded weights on both sides; ours on Parc's fast path, as ModelCache loads it for parc.surprisal,
    # the baseline on transformers' own forward, as the paper ran (Mamba's reference scan, RWKV's WKV loop).
    model = build_model(cfg.arch, cfg.data.vocab_size, seed=0).eval()
    install_fast_path(model, "auto")
    paper_model = build_model(cfg.arch, cfg.data.vocab_size, seed=0).eval()
    tokenizer = load_saved_tokenizer(common.demo_tokenizer_dir(work))
    stimuli = read_stimuli(stimuli_file(work))[:count]
    results = {}

    def ours() -> float:
        started = time.perf_counter()
        results["ours"] = score(model, StimulusEncoder(tokenizer).encode_all(stimuli))
        return len(stimuli) / (time.perf_counter() - started)

    def baseline() -> float:
        started = time.perf_counter()
        results["baseline"] = np.array(loop_all(paper_model, StimulusEncoder(tokenizer).encode_all(stimuli)))
        return len(stimuli) / (time.perf_counter() - started)

    with torch.inference_mode():
        runs = common.alternate({"ours": ours, "baseline": baseline}, pairs)
    record = common.compare(
        "S1",
        "stimuli/s",
        runs,
        arch=arch,
        size=size,
        stimuli=len(stimuli),
        max_abs_diff_nats=float(np.max(np.abs(results["ours"] - results["baseline"]))),
    )
    if size == "demo":
        record["target"], record["met"] = 100, record["ratio"] >= 100
    if flops:
        encoded = StimulusEncoder(tokenizer).encode_all(stimuli)
        peak = matmul_peak()
        ours_flops, loop_flops = forward_flops(model, encoded, False), forward_flops(paper_model, encoded, True)
        ours_rate, loop_rate = (
            record["ours"] * ours_flops / len(stimuli),
            record["baseline"] * loop_flops / len(stimuli),
        )
        record.update(
            matmul_peak_gflops=round(peak / 1e9, 2),
            ours_gflops=round(ours_rate / 1e9, 2),
            ours_peak_fraction=round(ours_rate / peak, 3),
            baseline_gflops=round(loop_rate / 1e9, 2),
            baseline_peak_fraction=round(loop_rate / peak, 3),
            flops_per_stimulus={"ours": round(ours_flops / len(stimuli)), "baseline": round(loop_flops / len(stimuli))},
            paper_180_runs_cpu_days={
                side: round(PAPER_RUNS * PAPER_STIMULI / record[side] / 86400, 1) for side in ("ours", "baseline")
            },
            # FLOPs only: at the fraction of peak reached here, and at the fp32 peak itself
            paper_180_runs_a100_hours_ours={
                "at_cpu_fraction": round(
                    PAPER_RUNS
                    * PAPER_STIMULI
                    * ours_flops
                    / len(stimuli)
                    / (A100_FP32_FLOPS * ours_rate / peak)
                    / 3600,
                    2,
                ),
                "at_peak": round(PAPER_RUNS * PAPER_STIMULI * ours_flops / len(stimuli) / A100_FP32_FLOPS / 3600, 2),
            },
        )
    return record


def run(args) -> list:
    quick = args.quick
    plan = [(arch, "demo", 600 if quick else 2000, 2 if quick else 3) for arch in ARCHS]
    plan.append(("pythia", "parc", 24 if quick else 64, 2))
    if args.smoke:  # the FLOP accounting of the Parc-size line too, on the demo model
        plan = [("pythia", "demo", 20, 1)]
    return [
        common.emit(measure(arch, size, count, pairs, args.work, flops=size == "parc" or args.smoke))
        for arch, size, count, pairs in plan
    ]


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
