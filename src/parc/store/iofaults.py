"""Disk faults as one-line errors: a full disk, a quota, a read-only, vanished or failing filesystem.

`DiskWrites(what, where, ...)` wraps a group of writes (a checkpoint, a metrics row, prepared data). When one
fails with an OS-level fault, the caller's `cleanup` first removes the partial write, then a `DiskFault`
(a ParcError with its own exit code, 74) says on one line what failed, where, how much space is free there,
and what to do. Libraries hide the cause in different ways: safetensors reports "(os error 28)" in its
message, and `torch.save` turns a failed write into an opaque RuntimeError, so `save_torch` writes through a
file object that keeps the OSError its write raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

from parc.errors import (  # noqa: F401
    EXIT_IO_ERROR,
    FAULTS,
    ParcError,
    describe_fault,
    fault_errno,
    format_bytes,
    free_space,
    nearest_existing,
)


class DiskFault(ParcError):
    """A write failed for a reason of the filesystem: the message says what, where, the free space, the fix."""

    exit_code = EXIT_IO_ERROR


class DiskWrites:
    """`with DiskWrites(...):` around writes turns an OS-level fault into a DiskFault, after `cleanup()`.

    Reusable: a collective save enters it once per phase. `then` may be a callable, evaluated after the
    cleanup (e.g. to name the checkpoint the next run will resume from).
    """

    def __init__(
        self,
        what: str,
        where: Path,
        cleanup: Optional[Callable[[], None]] = None,
        elsewhere: str = "",
        then: Union[str, Callable[[], str]] = "",
    ):
        self.what, self.where, self.cleanup, self.elsewhere, self.then = what, Path(where), cleanup, elsewhere, then

    def __enter__(self) -> "DiskWrites":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, ParcError):
            return False
        code = fault_errno(exc) if isinstance(exc, Exception) else None
        if code is None:
            return False
        if self.cleanup is not None:
            try:
                self.cleanup()
            except OSError:  # a vanished filesystem cannot be cleaned; nothing there looks complete anyway
                pass
        then = self.then() if callable(self.then) else self.then
        raise DiskFault(describe_fault(code, self.what, self.where, self.elsewhere, then)) from None


def directory_identity(path: Path) -> tuple:
    """(device, inode) of a directory: what `check_same_directory` compares."""
    stat = Path(path).stat()
    return stat.st_dev, stat.st_ino


def check_same_directory(path: Path, identity: tuple, what: str) -> None:
    """Refuse to write into `path` when it is gone or is no longer the directory it was (its filesystem was
    unmounted: the path now names the empty mount point, and writes would silently fill another disk)."""
    try:
        same = directory_identity(path) == identity
    except OSError:
        same = False
    if not same:
        raise DiskFault(
            f"{what} failed: {path} is gone or no longer the directory this run started in (its "
            f"filesystem was unmounted or the directory deleted; {free_space(path)}); bring it back, "
            f"then run the same command again (it resumes from the newest intact checkpoint)"
        )


class _KeepWriteError:
    """A file object for torch.save that remembers the OSError a write raised (torch replaces it)."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_torch(obj, path: Path) -> None:
    """torch.save, except that a failed write raises the OSError behind it (ENOSPC, EDQUOT, EIO ...)."""
    import torch

    with open(path, "wb") as handle:
        writer = _KeepWriteError(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
