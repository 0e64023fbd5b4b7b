"""`python -m parc.parity arch=<a> [steps=N] [tolerance=X] [overrides]`: our trainer vs `transformers.Trainer`.

Both sides train the same model from the same initial weights on the same sequences in the same order, the
per-step losses are printed side by side, ending with `max relative loss difference: <x>`; exit status 1 when
it exceeds `tolerance=` (default 1e-4). Everything but `steps` and `tolerance` is a training override
(default `experiment=demo`). The harness and what the reference is: parc.training.parity.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.cli import Command, Key
from parc.errors import EXIT_CHECK_FAILED, exit_on_error

COMMAND = Command(
    "parc.parity",
    __doc__,
    overrides=True,
    example="python -m parc.parity arch=pythia steps=50",
    keys=(
        Key("steps", int, 50, "optimizer steps on each side"),
        Key("tolerance", float, 1e-4, "the largest relative loss difference that passes"),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.training import run_parity

    if not run_parity(args.overrides, args.steps, args.tolerance):
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
