"""`python -m parc.grid status`: where every run of a grid (architectures x seeds) stands, from its files.

    python -m parc.grid status                          # the Parc grid under runs/parc: 3 archs x seeds 0-5
    python -m parc.grid status experiment=demo --seeds 0,1
    python -m parc.grid status --root runs/demo --json  # for scripts

Reads only what runs write, so it works from a login node while the grid trains, whatever launched it:
`<paths.output_root>/<run_name>/<arch>-seed<seed>-shard<shard>/` with `config.yaml` (the run's config),
`metrics.jsonl` (one row per step), `checkpoint-N/` (complete once `parc_checkpoint.json` exists) and
`hub_journal/` (one JSON per revision: pending, pushed or abandoned). A cell is *done* when the checkpoint
of its final step is complete, *running* when it wrote something within --stale-after seconds, *stalled*
otherwise (crashed, or waiting in the queue), and *not started* when it has no metrics or checkpoints.
`outlier`: a run whose loss leaves the other seeds' band (median +- k MAD-SDs, --outlier-k) at some step.
Overrides (`run_name=...`, `experiment=...`, `paths.root=...`) are read as `python -m parc.train` reads them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from parc.archs import NAMES
from parc.errors import exit_on_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parc.grid", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="latest step, loss, checkpoints, Hub revisions and state of every run")
    status.add_argument("overrides", nargs="*", help="config overrides as for python -m parc.train (run_name=...)")
    status.add_argument("--root", type=Path, help="the run directory (default <paths.output_root>/<run_name>)")
    status.add_argument("--archs", default=",".join(NAMES), help="architectures (default %(default)s)")
    status.add_argument("--seeds", default="0-5", help="seeds, e.g. 0-5 or 0,1 (default %(default)s)")
    status.add_argument("--stale-after", type=float, default=1800.0,
                        help="seconds without a write after which an unfinished run counts as stalled (default %(default)s)")
    status.add_argument("--outlier-k", type=float, default=6.0, help="flag a run whose loss leaves the other seeds' "
                        "median by more than k robust SDs (MAD) at some step; 0: off (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.training import grid_status

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    grid_status(args.overrides, args.root, args.archs, args.seeds, args.stale_after, args.json, args.outlier_k)


if __name__ == "__main__":
    main()
