"""Figures of runs and of their evaluations (the drawing lives in parc.study.plots).

    python -m parc.plot <output_dir>... [--out loss.png]          loss and learning-rate curves of runs
    python -m parc.plot curves <runs or grid root>... [--out figures/] [--band t95|iqr] [--x step|tokens]
                                                                  learning curves of a grid with seed bands
    python -m parc.plot evals <evals dir> [--out figures/] [--band t95|iqr] [--x step|tokens]
                                                                  metric vs step per architecture, seed bands

A directory holding several runs (e.g. `runs/demo`) expands to all of them. `--band t95` is the seed mean
with a 95 % t-interval (the Parc paper's), `iqr` the median with the interquartile range (PolyPythias').
Figures are written as PNG and PDF (`curves.*`, `evals-<evaluation>.*`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parc.errors import exit_on_error

SUBCOMMANDS = ("curves", "evals")


def banded_parser(command: str, what: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m parc.plot {command}")
    parser.add_argument("paths", nargs="+" if command == "curves" else 1, help=what)
    parser.add_argument("--out", default="figures", help="directory for the PNG and PDF files (default: figures)")
    parser.add_argument("--band", default="t95", help="t95 (mean, 95%% t-interval) or iqr (median, IQR)")
    parser.add_argument("--x", default="step", help="step or tokens")
    return parser


@exit_on_error
def main(argv=None) -> None:
    from parc.study import find_runs, plot_curves, plot_evals, plot_runs

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        command = argv.pop(0)
        what = "run output dirs or grid roots" if command == "curves" else "the out= directory of parc.evaluate"
        args = banded_parser(command, what).parse_args(argv)
        draw = plot_curves if command == "curves" else lambda paths, *rest: plot_evals(paths[0], *rest)
        for path in draw(args.paths, Path(args.out), args.band, args.x):
            print(f"wrote {path}")
        return
    parser = argparse.ArgumentParser(prog="python -m parc.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="output dirs of runs, or dirs holding several runs")
    parser.add_argument("--out", default="loss.png", help="image file to write (default: loss.png)")
    args = parser.parse_args(argv)
    print(f"wrote {plot_runs(find_runs(args.runs), Path(args.out))}")


if __name__ == "__main__":
    main()
