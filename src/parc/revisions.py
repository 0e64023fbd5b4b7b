"""`python -m parc.revisions <repo_id> [json=true] [branch=TEMPLATE]`: a repo's checkpoint revisions sorted by
step (checkpoint-10 after checkpoint-9, step10 after step9), flagging incomplete ones (no valid completion
manifest) and missing ones (scheduled, per the run's own manifest or config, but absent). Endpoint and token:
huggingface_hub's usual settings.

`audit=true [local=<output_dir>] [repair=true] [diffs=true]` (diffs: parc.hub.weightdiff), or `audit=true
grid=<run root>` for every run of a grid: see `parc.hub.audit`. Exit 1 when the audit finds something wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import EXIT_CHECK_FAILED, exit_on_error

COMMAND = Command(
    "parc.revisions",
    __doc__,
    paths=Paths("repo_id", 0, 1, str),
    keys=(
        Key("json", bool, False, "one JSON object instead of a table"),
        Key("branch", str, None, "branch name template, e.g. step{N} (default: the one the repo's branches follow)"),
        Key(
            "audit",
            bool,
            False,
            "check every revision's files against its manifest (sha256), duplicates, main "
            "vs the final step; exit 1 when something is wrong",
        ),
        Key("diffs", bool, False, "also stream every revision's weights: per-layer change, suspicious revisions"),
        Key("local", Path, None, "the run's output_dir: compare with its checkpoints"),
        Key("repair", bool, False, "re-push what the audit finds wrong (needs local=)"),
        Key("grid", Path, None, "audit every run under this grid root (not with a repo_id)"),
    ),
    deprecated={f"--{name}": name for name in ("json", "branch", "audit", "diffs", "local", "repair", "grid")},
    example="python -m parc.revisions EleutherAI/pythia-160m audit=true",
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.hub import run_revisions

    repo_id = args.paths[0] if args.paths else None
    if not run_revisions(repo_id, args.branch, args.audit, args.local, args.repair, args.grid, args.json, args.diffs):
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
