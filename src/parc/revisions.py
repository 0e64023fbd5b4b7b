"""`python -m parc.revisions <repo_id> [--json] [--branch TEMPLATE]`: a repo's checkpoint revisions sorted by
step (checkpoint-10 after checkpoint-9, step10 after step9), flagging incomplete ones (no valid completion manifest) and missing ones (scheduled,
per the run's own manifest or config, but absent). Endpoint and token: huggingface_hub's usual settings.

`--audit [--local <output_dir>] [--repair] [--diffs]` (--diffs: parc.hub.weightdiff), or `--audit --grid <run root>` for every run of a grid:
see `parc.hub.audit`. Exit 1 when the audit finds something wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parc.errors import EXIT_CHECK_FAILED, exit_on_error


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.revisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("repo_id", nargs="?", help="org/name (not with --grid)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--branch", default=None, help="branch name template, e.g. 'step{N}' (default: the one "
                        "the repo's numbered branches follow)")
    parser.add_argument("--audit", action="store_true", help="check every revision's files against its manifest "
                        "(sha256), duplicates, main vs the final step; exit 1 when something is wrong")
    parser.add_argument("--diffs", action="store_true", help="also stream every revision's weights: per-layer change, "
                        "revisions equal to the previous or the final one, non-monotone change from init")
    parser.add_argument("--local", type=Path, default=None, help="the run's output_dir: compare with its checkpoints")
    parser.add_argument("--repair", action="store_true", help="re-push what the audit finds wrong (needs --local)")
    parser.add_argument("--grid", type=Path, default=None, help="audit every run under this grid root (its "
                        "output_dirs name their repos)")
    args = parser.parse_args(argv)
    from parc.hub import run_revisions

    if not run_revisions(args.repo_id, args.branch, args.audit, args.local, args.repair, args.grid, args.json,
                         args.diffs):
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
