"""Parc: parallel multi-seed language-model pretraining (Pythia, Mamba, RWKV-4 x seeds), reproducibly.

Layers, bottom to top (tests/test_layout.py keeps them): errors and config (shared); store; kernels; archs
and data; hub; training; study; and the command faces, one module per `python -m parc.<command>`.
"""

from importlib import import_module
from typing import Callable, Dict

__version__ = "0.1.0"


def lazy_exports(package: str, names: Dict[str, str]) -> Callable[[str], object]:
    """A package's module-level `__getattr__`: each public name -> "submodule" (same name there) or
    "submodule:name", imported on first use, so a command pays only for what it touches (`parc.revisions`
    never loads torch). A public name never equals a submodule's name: once imported, the submodule would
    shadow it."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = names[name].partition(":")
        return getattr(import_module(f"{package}.{module}"), attribute or name)

    return __getattr__
