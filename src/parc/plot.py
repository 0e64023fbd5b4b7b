"""Figures of runs and of their evaluations (the drawing lives in parc.study.plots).

    python -m parc.plot <output_dir>... [out=loss.png]           loss and learning-rate curves of runs
    python -m parc.plot curves <runs or grid root>... [out=figures] [band=t95|iqr] [x=step|tokens]
                                                                  learning curves of a grid with seed bands
    python -m parc.plot evals <evals dir> [out=figures] [band=t95|iqr] [x=step|tokens]
                                                                  metric vs step per architecture, seed bands

A directory holding several runs (e.g. `runs/demo`) expands to all of them. `band=t95` is the seed mean
with a 95 % t-interval (the Parc paper's), `iqr` the median with the interquartile range (PolyPythias').
Figures are written as PNG and PDF (`curves.*`, `evals-<evaluation>.*`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import exit_on_error

BANDED = (
    Key("out", Path, Path("figures"), "directory for the PNG and PDF files"),
    Key("band", str, "t95", "t95 (mean, 95 % t-interval) or iqr (median, IQR)", ("t95", "iqr")),
    Key("x", str, "step", "the x axis", ("step", "tokens")),
)
OLD = {"--out": "out", "--band": "band", "--x": "x"}
COMMAND = Command(
    "parc.plot",
    __doc__,
    example="python -m parc.plot runs/demo out=loss.png",
    subcommands=(
        Command(
            "",
            paths=Paths("output_dir", 1, None, str),
            deprecated={"--out": "out"},
            keys=(Key("out", Path, Path("loss.png"), "image file to write"),),
        ),
        Command("curves", paths=Paths("runs or grid root", 1, None, str), keys=BANDED, deprecated=OLD),
        Command("evals", paths=Paths("evals dir"), keys=BANDED, deprecated=OLD),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import find_runs, plot_curves, plot_evals, plot_runs

    if not args.subcommand:
        print(f"wrote {plot_runs(find_runs(args.paths), args.out)}")
        return
    draw = plot_curves if args.subcommand == "curves" else lambda paths, *rest: plot_evals(paths[0], *rest)
    for path in draw(args.paths, args.out, args.band, args.x):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
