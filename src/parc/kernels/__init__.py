"""Faster computations of the same functions transformers computes, and how they are put on a built model.

`selective_scan` (Mamba) and `wkv` (RWKV-4) are plain PyTorch: they run on CPU and GPU, autograd
differentiates them, and tests/test_fast_paths.py holds them to the transformers reference.
`install_class` swaps the class of matching submodules: the forward changes, the parameters,
buffers and state_dict keys do not, so checkpoints stay standard HF checkpoints. Imports nothing of Parc
but its errors (archs builds on it).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, TypeVar

import torch

from parc.errors import ParcError

__all__ = ["check_mode", "fp32_math", "install_class"]
F = TypeVar("F", bound=Callable)


def fp32_math(fn: F) -> F:
    """Run `fn` with autocast off: its recurrences accumulate in fp32, as the CUDA kernels do, whatever
    autocast would give the matmuls inside; `fn` casts its result back to the input's dtype."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device_type = next(a.device.type for a in args if isinstance(a, torch.Tensor))
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def install_class(model: torch.nn.Module, targets: Iterable[type], new_class: type) -> int:
    """Give every submodule that is an instance of one of `targets` the class `new_class`; returns how many.

    `new_class` must be a subclass (or the original) of the module's class family that adds no
    parameters, so that a swap in either direction leaves `state_dict()` untouched.
    """
    targets = tuple(targets)
    swapped = 0
    for module in model.modules():
        if isinstance(module, targets):
            module.__class__ = new_class
            swapped += 1
    return swapped


def check_mode(arch: str, mode: str, modes: Iterable[str]) -> None:
    """Refuse an unknown fast-path name with the list of the ones this architecture has."""
    modes = list(modes)
    if mode not in modes:
        raise ParcError(f"arch {arch}: unknown fast_path {mode!r}; set arch.fast_path= one of: {', '.join(modes)}")
