"""`python -m parc.batch step=N [out=path.npy] [decode=true] <training overrides | run=<output_dir>>`: batch of step N.

Prints the exact token ids of the global batch that optimizer update N consumed (one sequence per line)
and its batch hash, which equals the `batch_hash` of step N in that run's metrics.jsonl. `step`, `out`,
`decode` and `run` belong to this command; every other argument is a training override (arch, data, trainer,
experiment, seed, ...) so the batch is computed from exactly the run's config.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

from parc.cli import REQUIRED, Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.batch",
    __doc__,
    overrides=True,
    example="python -m parc.batch experiment=demo step=1",
    keys=(
        Key("step", int, REQUIRED, "the optimizer update (1-based) whose batch to show"),
        Key("out", Path, None, "save the batch as .npy here instead of printing it"),
        Key("decode", bool, False, "print the text instead of token ids"),
        Key("run", Path, None, "a run's output_dir: its own config and recorded data"),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    try:
        from parc.training import show_batch

        show_batch(args.step, args.overrides, args.out, args.decode, args.run)
    except BrokenPipeError:  # `python -m parc.batch ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
