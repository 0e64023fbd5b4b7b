"""`python -m parc.plot <output_dir>... [--out loss.png]`: loss and learning-rate curves of one or more runs.

Runs are read from their `metrics.jsonl`; a directory holding several runs (e.g. `runs/demo`) expands to
all of them, so a whole seeds x architectures grid lands on one figure, one colour per architecture.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

from parc.errors import ParcError, exit_on_error
from parc.metrics import METRICS_FILE, read_metrics


def find_runs(paths: List[str]) -> Dict[str, List[dict]]:
    runs = {}
    for given in map(Path, paths):
        candidates = [given] if (given / METRICS_FILE).exists() else sorted(p.parent for p in given.glob(f"*/{METRICS_FILE}"))
        if not candidates:
            raise ParcError(f"no {METRICS_FILE} in {given} or its subdirectories: pass a run's output_dir")
        for run in candidates:
            runs[run.name] = read_metrics(run / METRICS_FILE)
    return runs


def plot_runs(runs: Dict[str, List[dict]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: works on compute nodes without a display
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours: Dict[str, str] = {}
    for name, rows in sorted(runs.items()):
        family = name.split("-seed")[0]
        colour = colours.setdefault(family, f"C{len(colours)}")
        steps = [r["step"] for r in rows]
        ax_loss.plot(steps, [r["loss"] for r in rows], color=colour, alpha=0.7, lw=1)
        ax_lr.plot(steps, [r["lr"] for r in rows], color=colour, lw=1)
    handles = [plt.Line2D([], [], color=c, label=f) for f, c in colours.items()]
    ax_loss.legend(handles=handles)
    ax_loss.set(xlabel="step", ylabel="training loss (nats/token)", title=f"{len(runs)} run(s)")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="schedule")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="output dirs of runs, or dirs holding several runs")
    parser.add_argument("--out", default="loss.png", help="image file to write (default: loss.png)")
    args = parser.parse_args(argv)
    print(f"wrote {plot_runs(find_runs(args.runs), Path(args.out))}")


if __name__ == "__main__":
    main()
