"""Loading GPT-NeoX / DeepSpeed checkpoint files (pickles) without importing deepspeed and without running code.

`torch.load(weights_only=True)` refuses them: their optimizer files pickle DeepSpeed's loss-scaler object (and
modern DeepSpeed a `ZeroStageEnum`). `load_untrusted(path)` unpickles them through a restricted `Unpickler`
whose `find_class` allows exactly what torch's own weights-only unpickler allows (tensor rebuild functions,
dtypes, `OrderedDict`, `torch.Size`, ...), numpy's array/dtype constructors (NeoX's saved numpy RNG state),
maps the DeepSpeed loss scalers to a plain `ScalerRecord` (its attributes only), `ZeroStageEnum` to an int and
the `fragment_address` named tuples to tuples,
and refuses any other class with a one-line ParcError naming it.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import torch

from parc.errors import ParcError

SCALER_CLASSES = {
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
}
ZERO_STAGE_ENUM = ("deepspeed.runtime.zero.config", "ZeroStageEnum")
FRAGMENT_ADDRESS = ("deepspeed.utils.tensor_fragment", "fragment_address")  # modern param_slice_mappings
NUMPY_DATA = {
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
}


class ScalerRecord:
    """What a pickled DeepSpeed loss scaler held (`cur_scale`, `cur_iter`, `last_overflow_iter`, `scale_window`,
    `cur_hysteresis`, ...), as plain attributes; `kind` is the class's name."""

    kind = "LossScaler"

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"{self.kind}({self.__dict__})"


class ZeroStage(int):
    """DeepSpeed's ZeroStageEnum member, as its int."""


class Fields(tuple):
    """A DeepSpeed named tuple (fragment_address: numel, start), as a tuple."""

    def __new__(cls, *values):
        return tuple.__new__(cls, values)


def _allowed() -> dict:
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """torch.load's Unpickler with a closed list of classes (see the module docstring)."""

    path = "?"  # the file being read, for the refusal (set by load_untrusted on a subclass)
    allowed: dict = {}  # torch's weights-only globals (set by load_untrusted on a subclass)

    def find_class(self, module: str, name: str):
        import _compat_pickle  # protocol 2 (torch.save's) writes Python 2 names: __builtin__.set is builtins.set

        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in SCALER_CLASSES:
            return type(name, (ScalerRecord,), {"kind": name})
        if (module, name) == ZERO_STAGE_ENUM:
            return ZeroStage
        if (module, name) == FRAGMENT_ADDRESS:
            return Fields
        key = f"{module}.{name}"
        if key in NUMPY_DATA:
            return super().find_class(module, name)
        allowed = self.allowed.get(key)
        if allowed is not None:
            return allowed
        raise ParcError(
            f"{self.path} asks to load the class {key}, which a GPT-NeoX/DeepSpeed checkpoint does not "
            f"hold; refused (only tensors, plain data and DeepSpeed's loss scaler are read)"
        )


def load_untrusted(path: Path):
    """The object pickled in `path` (a torch.save file), read with the restricted unpickler, onto the CPU."""
    unpickler = type("Unpickler", (RestrictedUnpickler,), {"path": str(path), "allowed": _allowed()})
    module = types.SimpleNamespace(Unpickler=unpickler, load=pickle.load, __name__="parc_neox_pickle")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    except ParcError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ParcError(
            f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
            f"(a damaged or partial download? fetch the file again)"
        ) from None
