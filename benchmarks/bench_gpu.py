"""GPU: training tokens/s and MFU at the real (Parc) sizes, ours vs the original, when CUDA is present.

Per architecture, the Parc model (vocab 50277, seq 1024) trains on one random micro-batch, fp32 as Parc
trained; the first steps are warm-up (CUDA context, kernel selection) and not timed. Ours installs its fast
path (Mamba: the mamba_ssm kernels when installed, else Parc's scan; RWKV: the chunked WKV) and uses fused
AdamW; the baseline is transformers' own forward with the same AdamW groups. MFU comes from `parc.training.perf.mfu`
(model FLOPs per token from `parc.archs`, over the device's peak). Without CUDA it prints one line saying
so; `--device cpu` runs it at the demo size on CPU, only to check that the benchmark itself works.
"""

from __future__ import annotations

import sys

import common

ARCHS = ("pythia", "mamba", "rwkv")
PARC_SIZE = ["arch.size=full", "data.vocab_size=50277", "data.seq_len=1024"]
MARKER = "STEP_SECONDS"


def sizes(args) -> dict:
    if args.smoke:  # on CPU at the demo size, in this process: checks that the benchmark runs
        return {"micro_batch": 2, "warmup": 1, "steps": 1, "repeats": 1, "archs": ("pythia",)}
    return (
        {"micro_batch": 8, "warmup": 3, "steps": 5, "repeats": 2, "archs": ARCHS}
        if args.quick
        else {"micro_batch": 16, "warmup": 5, "steps": 20, "repeats": 3, "archs": ARCHS}
    )


def add_options(parser) -> None:
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu: run at the demo size on CPU, only to check the benchmark works",
    )


def child_main(argv: list) -> None:
    """`bench_gpu.py --child <side> <warmup> <steps> <overrides>`."""
    child(*argv)


def child(side: str, *overrides: str) -> None:
    warmup, steps = int(overrides[0]), int(overrides[1])
    seconds = common.train_on_random_tokens(list(overrides[2:]), side, warmup + steps)
    print(f"{MARKER} {sum(seconds[warmup:]) / steps}", flush=True)


def tokens_per_s(side: str, overrides: list, size: dict, tokens_per_step: int, local: bool) -> float:
    result = common.child([__file__, "--child", side, size["warmup"], size["steps"], *overrides], local=local)
    return tokens_per_step / common.stamped(result["stdout"], MARKER)


def run(args) -> list:
    import torch

    from parc import archs
    from parc.config import compose
    from parc.training.perf import mfu

    on_cpu = getattr(args, "device", "cuda") == "cpu" or args.smoke
    if not torch.cuda.is_available() and not on_cpu:
        return [
            common.emit(
                {
                    "bench": "GPU",
                    "skipped": "no CUDA device on this machine (torch.cuda.is_available() is False): nothing measured",
                }
            )
        ]
    size = sizes(args)
    shape = ["experiment=demo", "device=cpu"] if on_cpu else PARC_SIZE
    device = torch.device("cpu" if on_cpu else "cuda")
    records = []
    for arch in size["archs"]:
        overrides = [*shape, f"arch={arch}", f"trainer.micro_batch_size={size['micro_batch']}"]
        cfg = compose(overrides)
        tokens = size["micro_batch"] * cfg.data.seq_len
        runs = common.alternate(
            {
                side: (lambda side=side: tokens_per_s(side, overrides, size, tokens, args.smoke))
                for side in ("ours", "baseline")
            },
            size["repeats"],
        )
        record = common.compare(
            "GPU",
            "tokens/s",
            runs,
            arch=arch,
            device=str(device),
            precision="fp32",
            micro_batch=size["micro_batch"],
            seq_len=cfg.data.seq_len,
        )
        model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed, device="meta")
        flops = archs.get_spec(arch).flops_per_token(model.config, cfg.data.seq_len)
        record["mfu"] = {side: mfu(flops, record[side], device, "fp32") for side in ("ours", "baseline")}
        records.append(common.emit(record))
    return records


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        common.offline()
        child_main(sys.argv[2:])
    else:
        common.standalone(run, __doc__.splitlines()[0], add_options)
