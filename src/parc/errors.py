"""The user-facing error type, the single place that prints it and sets the exit code, and the words for disk
faults (a full disk, a quota, a read-only or failing filesystem) that every layer uses to say what went wrong."""

from __future__ import annotations

import errno
import functools
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable)

# Every exit status a Parc command gives, named once (tests/test_layout.py: no other module exits with a number).
EXIT_DONE = 0
EXIT_CHECK_FAILED = 1  # a check found something damaged or wrong (parc.verify, an audit, parity over tolerance)
EXIT_USER_ERROR = 2  # a ParcError: the input is wrong, nothing was written
EXIT_IO_ERROR = 74  # sysexits' EX_IOERR, a disk fault: not the user's input (2), not a preemption to requeue (75)
EXIT_PREEMPTED = 75  # SIGUSR1/SIGTERM: a checkpoint was written; Slurm requeues and resume=auto continues
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

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


def describe_fault(code: int, what: str, where: Path, elsewhere: str = "", then: str = "") -> str:
    reason, fix = FAULTS[code]
    fix += f" or {elsewhere}" if elsewhere else ""
    return f"{what} failed: {reason} ({free_space(where)}); {fix}" + (f", then {then}" if then else "")


def unguarded_fault(exc: OSError) -> Optional[str]:
    """For entry points: a disk fault that no DiskWrites caught, as one line (None: not a disk fault)."""
    code = fault_errno(exc)
    if code not in UNGUARDED:
        return None
    target = getattr(exc, "filename", None)
    where = Path(target) if target else Path.cwd()
    what = f"writing {target}" if target else "a write"
    return describe_fault(code, what, where.parent if target else where, then="run the same command again")


class ParcError(Exception):
    """A mistake the user can fix: the message names the problem and the fix, on one line."""


def exit_on_error(func: F) -> F:
    """Run an entry point; a ParcError becomes `error: <message>` on stderr and exit code 2 (a disk fault: 74),
    no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ParcError as exc:
            message = " ".join(str(exc).split())  # one line, whatever the message held
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(getattr(exc, "exit_code", EXIT_USER_ERROR))
        except OSError as exc:  # a full or failing disk where no parc.store.iofaults.DiskWrites guarded the write
            message = unguarded_fault(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_IO_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]
