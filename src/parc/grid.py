"""`python -m parc.grid status`: where every run of a grid (architectures x seeds) stands, from its files.

    python -m parc.grid status                          # the Parc grid under runs/parc: 3 archs x seeds 0-5
    python -m parc.grid status experiment=demo seeds=0,1
    python -m parc.grid status root=runs/demo json=true # for scripts

Reads only what runs write, so it works from a login node while the grid trains, whatever launched it:
`<paths.output_root>/<run_name>/<arch>-seed<seed>-shard<shard>/` with `config.yaml` (the run's config),
`metrics.jsonl` (one row per step), `checkpoint-N/` (complete once `parc_checkpoint.json` exists) and
`hub_journal/` (one JSON per revision: pending, pushed or abandoned). A cell is *done* when the checkpoint
of its final step is complete, *running* when it wrote something within stale_after= seconds, *stalled*
otherwise (crashed, or waiting in the queue), and *not started* when it has no metrics or checkpoints.
`outlier`: a run whose loss leaves the other seeds' band (median +- k MAD-SDs, outlier_k=) at some step.
Other keys (`run_name=...`, `experiment=...`, `paths.root=...`) are read as `python -m parc.train` reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, STRS, Command, Key
from parc.errors import exit_on_error

KEYS = (
    Key("root", Path, None, "the run directory (default <paths.output_root>/<run_name>)"),
    Key("archs", STRS, None, "architectures (default pythia,mamba,rwkv)"),
    Key("seeds", INTS, [0, 1, 2, 3, 4, 5], "seeds, e.g. 0-5 or 0,1 or 0-2,5"),
    Key("stale_after", float, 1800.0, "seconds without a write after which an unfinished run counts as stalled"),
    Key(
        "outlier_k",
        float,
        6.0,
        "flag a run whose loss leaves the other seeds' median by more than k robust SDs (MAD) at some step; 0: off",
    ),
    Key("json", bool, False, "print JSON instead of a table"),
)
COMMAND = Command(
    "parc.grid",
    __doc__,
    example="python -m parc.grid status experiment=demo seeds=0-2",
    subcommands=(
        Command(
            "status",
            keys=KEYS,
            overrides=True,
            example="python -m parc.grid status experiment=demo seeds=0-2",
            deprecated={"--" + key.name.replace("_", "-"): key.name for key in KEYS},
        ),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.training import grid_status

    grid_status(args.overrides, args.root, args.archs, args.seeds, args.stale_after, args.json, args.outlier_k)


if __name__ == "__main__":
    main()
