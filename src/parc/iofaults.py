"""Disk faults as one-line errors: a full disk, a quota, a read-only, vanished or failing filesystem.

`DiskWrites(what, where, ...)` wraps a group of writes (a checkpoint, a metrics row, prepared data). When one
fails with an OS-level fault, the caller's `cleanup` first removes the partial write, then a `DiskFault`
(a ParcError with its own exit code, 74) says on one line what failed, where, how much space is free there,
and what to do. Libraries hide the cause in different ways: safetensors reports "(os error 28)" in its
message, and `torch.save` turns a failed write into an opaque RuntimeError, so `save_torch` writes through a
file object that keeps the OSError its write raised.
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path
from typing import Callable, Optional, Union

from parc.errors import ParcError

EXIT_IO_ERROR = 74  # sysexits' EX_IOERR: not the user's input (2), not a preemption to requeue (75)

# errno -> (what happened, what to do about it)
FAULTS = {
    errno.ENOSPC: ("no space left on the device", "free space there"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota (or have it raised)"),
    errno.EROFS: ("the filesystem is read-only", "make it writable again"),
    errno.EFBIG: ("the file exceeds the filesystem's (or this process's) file size limit", "raise the limit"),
    errno.EIO: ("an I/O error (failing disk or network filesystem)", "check the filesystem"),
    errno.ESTALE: ("a stale file handle (the network filesystem went away)", "check the mount"),
    errno.ENOTCONN: ("the filesystem is disconnected", "check the mount"),
    errno.ENODEV: ("the filesystem is gone", "check the mount"),
    errno.ENOENT: ("the directory is gone (unmounted or deleted)", "bring it back"),
    errno.EACCES: ("permission denied", "fix the permissions"),
    errno.EPERM: ("operation not permitted", "fix the permissions"),
}
# Outside a guarded write an ENOENT or EACCES more likely names a mistake in a path than a fault of the disk.
UNGUARDED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.ESTALE, errno.ENOTCONN}
_OS_ERROR_CODE = re.compile(r"os error (\d+)")


def fault_errno(exc: BaseException) -> Optional[int]:
    """The errno behind `exc` or its causes, if it is one of FAULTS (also when a library put it in a message)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = exc.errno if isinstance(exc, OSError) else None
        if code is None:
            match = _OS_ERROR_CODE.search(str(exc))
            code = int(match.group(1)) if match else None
        if code in FAULTS:
            return code
        exc = exc.__cause__ or exc.__context__
    return None


def nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_space(path: Path) -> str:
    where = nearest_existing(path)
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return f"free space at {where} unknown"
    return f"{format_bytes(usage.free)} free of {format_bytes(usage.total)} at {where}"


class DiskFault(ParcError):
    """A write failed for a reason of the filesystem: the message says what, where, the free space, the fix."""

    exit_code = EXIT_IO_ERROR


def describe_fault(code: int, what: str, where: Path, elsewhere: str = "", then: str = "") -> str:
    reason, fix = FAULTS[code]
    fix += f" or {elsewhere}" if elsewhere else ""
    return f"{what} failed: {reason} ({free_space(where)}); {fix}" + (f", then {then}" if then else "")


class DiskWrites:
    """`with DiskWrites(...):` around writes turns an OS-level fault into a DiskFault, after `cleanup()`.

    Reusable: a collective save enters it once per phase. `then` may be a callable, evaluated after the
    cleanup (e.g. to name the checkpoint the next run will resume from).
    """

    def __init__(self, what: str, where: Path, cleanup: Optional[Callable[[], None]] = None,
                 elsewhere: str = "", then: Union[str, Callable[[], str]] = ""):
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
        raise DiskFault(f"{what} failed: {path} is gone or no longer the directory this run started in (its "
                        f"filesystem was unmounted or the directory deleted; {free_space(path)}); bring it back, "
                        f"then run the same command again (it resumes from the newest intact checkpoint)")


def unguarded_fault(exc: OSError) -> Optional[str]:
    """For entry points: a disk fault that no DiskWrites caught, as one line (None: not a disk fault)."""
    code = fault_errno(exc)
    if code not in UNGUARDED:
        return None
    target = getattr(exc, "filename", None)
    where = Path(target) if target else Path.cwd()
    what = f"writing {target}" if target else "a write"
    return describe_fault(code, what, where.parent if target else where, then="run the same command again")


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
