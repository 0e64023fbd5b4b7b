"""Model FLOPs utilisation: the accelerators' peak dense FLOP/s, and `mfu` from FLOPs per token and throughput.

MFU = (training FLOPs per token x tokens per second per device) / the device's peak dense FLOP/s
for the precision the matmuls run in (PaLM's definition: the model's FLOPs, not the hardware's,
so recomputation and a slower kernel count against it). FLOPs per token come from the
architecture (`ArchSpec.flops_per_token`). Peaks are NVIDIA's datasheet figures without
structured sparsity; a device not in the table, or a CPU, has no MFU (None, printed "n/a").
"""

from __future__ import annotations

import torch

# Peak dense FLOP/s per GPU, by datasheet. Order matters: the first name contained in the device
# name wins, so the specific variants (PCIe, NVL) come before the family.
PEAK_FLOPS = (
    ("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}),
    ("H100 PCIe", {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12}),
    ("H100 NVL", {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12, "fp16": 835.5e12}),
    ("H100", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}),  # SXM
    ("H200 NVL", {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12, "fp16": 835.5e12}),
    ("H200", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}),  # SXM
)
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def matmul_precision(precision: str) -> str:
    """The precision training matmuls run in, for the trainer's setting ("fp32", "bf16"; also "tf32", "fp16").

    fp32 matmuls run as TF32 on the tensor cores when PyTorch allows it
    (`torch.backends.cuda.matmul.allow_tf32`, or a float32 matmul precision other than "highest").
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32" and (
        torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    ):
        return "tf32"
    return precision


def peak_flops(device_name: str, precision: str) -> float | None:
    """Peak dense FLOP/s of the GPU called `device_name` (as torch.cuda.get_device_name says) at `precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    for family, peaks in PEAK_FLOPS:
        if family in device_name:
            return peaks[precision]
    return None


def mfu(
    flops_per_token: float, tokens_per_s: float, device: torch.device | str, precision: str, num_devices: int = 1
) -> float | None:
    """Fraction of peak: flops_per_token x tokens_per_s / (num_devices x peak); None ("n/a") off CUDA or for an unknown GPU.

    tokens_per_s is the throughput of all `num_devices` devices together (all of the same kind);
    precision is the trainer's setting, resolved by `matmul_precision` (fp32 may run as TF32).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    peak = peak_flops(torch.cuda.get_device_name(device), matmul_precision(precision))
    if peak is None:
        return None
    return flops_per_token * tokens_per_s / (num_devices * peak)


def format_mfu(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
