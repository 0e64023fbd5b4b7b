"""`python -m parc.batch step=N [out=path.npy] [decode=true] <training overrides | run=<output_dir>>`: batch of step N.

Prints the exact token ids of the global batch that optimizer update N consumed (one sequence per line)
and its batch hash, which equals the `batch_hash` of step N in that run's metrics.jsonl. `step`, `out`
and `decode` belong to this command; every other argument is a training override (arch, data, trainer,
experiment, seed, ...) so the batch is computed from exactly the run's config.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    try:
        from parc.training import show_batch

        show_batch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `python -m parc.batch ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
