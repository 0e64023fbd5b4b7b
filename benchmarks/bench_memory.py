"""B4: peak memory of a training step per architecture, ours vs the original, at the demo size and at the
real (Parc) size with micro-batch 1 and seq 1024.

Each measurement is a child process that builds the model (`parc.archs.build_model`, as Parc: set_seed then
from_config), the AdamW of `parc.training.optim`, and runs two optimizer steps (forward, backward, clipping, update;
the second with Adam's moments allocated) on one micro-batch. Ours installs its fast path
(`arch.fast_path=auto`); the baseline keeps transformers' own forward, as the original script ran.
On CPU the number is the child's peak resident memory (VmHWM: weights, gradients, Adam state, activations,
plus the interpreter and libraries, ~0.5 GB; see `common.peak_rss_mb` for why not ru_maxrss); on CUDA it is
torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import sys

import common

ARCHS = ("pythia", "mamba", "rwkv")
SIZES = {  # what the Parc configs hold; the demo's micro-batch, or micro-batch 1 at the real size
    "demo": ["experiment=demo"],
    "parc": ["arch.size=full", "data.vocab_size=50277", "data.seq_len=1024", "trainer.micro_batch_size=1"],
}
MARKER = "PEAK_MB"


def plan(args) -> tuple[list, int]:
    """(size, arch) pairs and runs per side. Quick: the real size for Pythia only (RWKV's and Mamba's reference
    forwards at seq 1024 take minutes per step on 2 cores). One run per side: a step's peak memory is
    deterministic to a few MB, and a real-size Mamba baseline takes 15 to 30+ minutes. Smoke: the demo Pythia, in
    this process (so the peak is this process's)."""
    if args.smoke:
        return [("demo", "pythia")], 1
    return [("demo", arch) for arch in ARCHS] + [("parc", arch) for arch in (("pythia",) if args.quick else ARCHS)], 1


def child(arch: str, size: str, side: str) -> None:
    """Two training steps (the second with Adam's moments allocated), then the peak memory."""
    import torch

    common.train_on_random_tokens([*SIZES[size], f"arch={arch}"], side, steps=2)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else common.peak_rss_mb()
    print(f"{MARKER} {peak}", flush=True)


def child_main(argv: list) -> None:
    """`bench_memory.py --child <arch> <size> <side>`."""
    child(*argv[:3])


def peak_mb(arch: str, size: str, side: str, local: bool) -> float:
    return common.stamped(common.child([__file__, "--child", arch, size, side], local=local)["stdout"], MARKER)


def run(args) -> list:
    import torch

    pairs, repeats = plan(args)
    unit = "MB (CUDA peak allocated)" if torch.cuda.is_available() else "MB (peak RSS of the process)"
    records = []
    for size, arch in pairs:
        runs = common.alternate(
            {
                "ours": lambda: peak_mb(arch, size, "ours", args.smoke),
                "baseline": lambda: peak_mb(arch, size, "baseline", args.smoke),
            },
            repeats,
        )
        records.append(
            common.emit(
                common.compare("B4", unit, runs, better="lower", arch=arch, size=size, shape=" ".join(SIZES[size]))
            )
        )
    return records


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        common.offline()
        child_main(sys.argv[2:])
    else:
        common.standalone(run, __doc__.splitlines()[0])
