"""Learning curves read from the runs' `metrics.jsonl` (`python -m parc.plot <runs>` and `parc.plot curves`):
which runs a path holds, each run's identity, the loss curves of a grid with seed bands, loss and LR per run."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from parc.errors import ParcError
from parc.store.fileio import atomic_write
from parc.store.metricsfile import METRICS_FILE, read_metrics
from parc.study.plots import band_figure, check_choices, group_label, pyplot, save_figure


def find_runs(paths: Sequence[str]) -> Dict[Path, List[dict]]:
    """run directory -> its metrics.jsonl rows; a directory holding several runs expands to all of them."""
    runs = {}
    for given in map(Path, paths):
        candidates = (
            [given] if (given / METRICS_FILE).exists() else sorted(p.parent for p in given.glob(f"*/{METRICS_FILE}"))
        )
        if not candidates:
            raise ParcError(f"no {METRICS_FILE} in {given} or its subdirectories: pass a run's output_dir")
        for run in candidates:
            runs[run] = read_metrics(run / METRICS_FILE)
    return runs


def run_identity(run_dir: Path) -> Dict[str, object]:
    """arch, size, seed of a run: from the config.yaml parc.train wrote, else from its directory name."""
    from parc.study.sources.runs import identity_from_config, local_run_config, parse_name

    identity = identity_from_config(local_run_config(run_dir))
    named = parse_name(run_dir.name)
    return {
        "arch": identity.get("arch") or named.get("arch") or run_dir.name.split("-seed")[0],
        "size": identity.get("size") or named.get("size") or "",
        "seed": identity.get("seed", int(named["seed"]) if "seed" in named else None),
        "run": str(run_dir),
    }


def learning_curves(runs: Dict[Path, List[dict]]):
    """One row per (run, logged step): arch, size, seed, run, step, tokens, loss."""
    import pandas as pd

    frames = []
    for run_dir, rows in sorted(runs.items()):
        frame = pd.DataFrame([{k: r.get(k) for k in ("step", "tokens", "loss")} for r in rows])
        for key, value in run_identity(run_dir).items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def curves_figure(curves, band: str = "t95", x: str = "step"):
    check_choices(band, x)
    curves = curves[curves["loss"].notna()].copy()
    curves["line"] = group_label(curves)
    runs = curves["run"].nunique()
    return band_figure(
        curves,
        x=x,
        y="loss",
        hue="line",
        band=band,
        ylabel="training loss (nats/token)",
        title=f"learning curves, {runs} run(s)",
    )


def plot_curves(paths: Sequence[str], out_dir: Path, band: str = "t95", x: str = "step") -> List[Path]:
    """`<out_dir>/curves.png` and `.pdf`: training loss of a grid, seed bands per architecture."""
    return save_figure(curves_figure(learning_curves(find_runs(paths)), band, x), Path(out_dir) / "curves")


def plot_runs(runs: Dict[Path, List[dict]], out: Path) -> Path:
    """Every run's loss and learning rate, one colour per architecture (`python -m parc.plot <runs>`)."""
    plt = pyplot()
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours: Dict[str, str] = {}
    for run_dir, rows in sorted(runs.items()):
        family = run_dir.name.split("-seed")[0]
        colour = colours.setdefault(family, f"C{len(colours)}")
        steps = [r["step"] for r in rows]
        ax_loss.plot(steps, [r["loss"] for r in rows], color=colour, alpha=0.7, lw=1)
        ax_lr.plot(steps, [r["lr"] for r in rows], color=colour, lw=1)
    handles = [plt.Line2D([], [], color=c, label=f) for f, c in colours.items()]
    ax_loss.legend(handles=handles)
    ax_loss.set(xlabel="step", ylabel="training loss (nats/token)", title=f"{len(runs)} run(s)")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="schedule")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=120))
    plt.close(fig)
    return out
