"""`python -m parc.verify <output_dir | grid root | checkpoint dir> [json=true] [size_only=true]`: check every
checkpoint without training.

    python -m parc.verify runs/parc/pythia-seed0-shard0      # one run: a table of its checkpoints
    python -m parc.verify runs/parc                          # a grid: every run under it
    python -m parc.verify runs/parc json=true                # for scripts
    python -m parc.verify runs/parc size_only=true           # sizes only (no sha256: seconds for a grid)

Each file a checkpoint's manifest lists is checked for presence, size and sha256 (parc.store.integrity).
Exit status: 0 when nothing is damaged, 1 when a checkpoint is damaged (incomplete ones, interrupted
saves that no run would use, are listed but are not failures), 2 for a bad path.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import EXIT_CHECK_FAILED, exit_on_error

COMMAND = Command(
    "parc.verify",
    __doc__,
    paths=Paths("output_dir | grid root | checkpoint dir"),
    keys=(
        Key("json", bool, False, "print JSON instead of a table"),
        Key("size_only", bool, False, "check sizes only, not sha256"),
    ),
    deprecated={"--json": "json", "--size-only": "size_only"},
    example="python -m parc.verify runs/parc size_only=true",
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.store import verify_tree

    if verify_tree(args.paths[0], check_sha=not args.size_only, as_json=args.json):
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
