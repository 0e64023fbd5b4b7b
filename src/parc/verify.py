"""`python -m parc.verify <output_dir | grid root | checkpoint dir>`: check every checkpoint without training.

    python -m parc.verify runs/parc/pythia-seed0-shard0      # one run: a table of its checkpoints
    python -m parc.verify runs/parc                          # a grid: every run under it
    python -m parc.verify runs/parc --json                   # for scripts
    python -m parc.verify runs/parc --size-only              # sizes only (no sha256: seconds for a grid)

Each file a checkpoint's manifest lists is checked for presence, size and sha256 (parc.store.integrity).
Exit status: 0 when nothing is damaged, 1 when a checkpoint is damaged (incomplete ones, interrupted
saves that no run would use, are listed but are not failures), 2 for a bad path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from parc.errors import EXIT_CHECK_FAILED, exit_on_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parc.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run's output_dir, a grid root, or one checkpoint-N directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--size-only", action="store_true", help="check sizes only, not sha256")
    return parser


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.store import verify_tree

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if verify_tree(args.path, check_sha=not args.size_only, as_json=args.json):
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
