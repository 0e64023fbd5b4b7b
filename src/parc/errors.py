"""The user-facing error type, and the single place that prints it and sets the exit code."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


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
        except OSError as exc:  # a full or failing disk where no parc.iofaults.DiskWrites guarded the write
            from parc.iofaults import EXIT_IO_ERROR, unguarded_fault

            message = unguarded_fault(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_IO_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
