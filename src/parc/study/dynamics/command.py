"""parc.dynamics's job: check one subcommand's arguments, compute, write its table(s) and figures, print a summary.

noise       evals=<parc.evaluate out dir> [out=]                      -> noise.parquet, noise-pairs.parquet
similarity  runs=... [steps=] [pairs=steps,seeds,archs] [layers=diagonal|all] [sequences=32]
            [max_tokens=4096] [out=] [eval.heldout.* / eval.batch_size= / eval.fast_path=]
                                                                      -> similarity.parquet
diffs       runs=<run dirs | hub:org/name> [branch=] [tolerance=0.02] [out=] -> diffs.parquet, diffs-revisions.parquet
outliers    runs=<grid root | run dirs> [evals=] [k=6] [out=]        -> outliers.parquet
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from parc.errors import ParcError


def write_table(frame, path: Path) -> Path:
    from parc.store.fileio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def prepare_out(out: Optional[Path], runs: str, leaf: str = "dynamics") -> Path:
    """`out`, or `<root of the first run>/<leaf>`; refused before any work when it cannot be written."""
    from parc.study.evaluations.loop import check_writable
    from parc.study.sources.runs import default_out

    out = Path(out) if out is not None else default_out(runs, leaf)
    check_writable(out)
    return out


def run_noise(evals: Path, out: Optional[Path] = None, echo=print) -> None:
    """Seed / checkpoint / item variance and MDE from parc.evaluate's table in `evals` -> `out` (default evals)."""
    from parc.study.dynamics.figures import noise_figures
    from parc.study.dynamics.noise import noise_table

    noise, pairs = noise_table(Path(evals))
    out = Path(out or evals)
    written = [write_table(noise, out / "noise.parquet"), write_table(pairs, out / "noise-pairs.parquet")]
    written += noise_figures(noise, pairs, out)
    for key, rows in noise.groupby(["arch", "evaluation", "task", "metric"], sort=True):
        row = rows.sort_values("step").iloc[-1]
        seed = row.get("var_seed", float("nan"))
        jitter = rows["var_checkpoint"].median()  # the last step has no neighbour after it
        echo(
            f"{key[0]} {key[2]} {key[3]} step {row['step']}: mean {row['mean']:.4g}, seed SD {seed**0.5:.3g}, "
            f"item SD (of the mean) {row['var_item'] ** 0.5:.3g}, MDE {row['mde']:.3g} (n={row['n_runs']}); "
            f"checkpoint SD {jitter**0.5:.3g} (median over steps)"
        )
    echo(
        f"parc.dynamics noise: {len(noise)} rows -> {', '.join(str(p) for p in written[:2])} (+{len(written) - 2} figures)"
    )


def run_similarity(
    runs: str,
    overrides: List[str],
    steps: Optional[List[int]] = None,
    pattern: Optional[str] = None,
    pairs: Sequence[str] = ("steps", "seeds", "archs"),
    layers: str = "diagonal",
    sequences: int = 32,
    max_tokens: int = 4096,
    out: Optional[Path] = None,
    echo=print,
) -> None:
    """CKA and effective rank of hidden states between checkpoints of `runs`; `overrides` of configs/evaluate.yaml
    (eval.heldout.*, eval.batch_size, eval.fast_path) choose the held-out sequences and how they are run."""
    import numpy as np

    from parc.study.dynamics.figures import similarity_figures
    from parc.study.dynamics.similarity import check_kinds, held_out, loader, score
    from parc.study.evaluations.settings import register_evaluate_schema
    from parc.study.sources.model_cache import ModelCache
    from parc.study.sources.runs import resolve_runs

    kinds = list(pairs)
    if layers not in ("diagonal", "all"):
        raise ParcError(f"layers={layers}: choose diagonal (layer i with layer i) or all (every pair)")
    if sequences < 4:
        raise ParcError(f"sequences={sequences}: CKA needs at least 4 held-out sequences")
    check_kinds(kinds)  # a bad pairs= is refused before anything loads
    refs = resolve_runs(runs, steps, pattern)
    out = prepare_out(out, runs)
    register_evaluate_schema()
    heldout = held_out(refs, overrides, sequences)
    from parc.config import compose

    cfg = compose(overrides, config_name="evaluate")
    cache = ModelCache(
        keep_downloads=cfg.eval.keep_downloads,
        fast_path=cfg.eval.fast_path,
        cache_dir=Path(cfg.eval.cache_dir) if cfg.eval.cache_dir else None,
    )
    load, timings = loader(heldout, max_tokens, int(cfg.eval.batch_size), cache, echo=echo), []

    def load_timed(ref):  # keeps the numbers, not the states (score drops those when it is done with them)
        state = load(ref)
        timings.append((state.seconds, len(state.layers[0])))
        return state

    began = time.perf_counter()
    table = score(refs, load_timed, kinds, all_layers=layers == "all")
    scoring = time.perf_counter() - began - sum(t for t, _ in timings)
    written = [write_table(table, out / "similarity.parquet")] + similarity_figures(table, out)
    seconds = float(np.median([t for t, _ in timings]))
    echo(
        f"parc.dynamics similarity: {len(timings)} checkpoints, {timings[0][1]} tokens each; hidden "
        f"states {seconds:.2f} s per checkpoint (median, load + forward), scoring "
        f"{scoring:.2f} s for {int((table['metric'] == 'cka').sum())} CKA values -> {written[0]}"
    )


def diff_sources(runs: str, branch: Optional[str]):
    """(source, name, revisions) per run of `runs=`: run dirs, hub:org/name, and raw NeoX checkpoints (neox:<dir>
    items grouped by save dir, so the tags of one save dir named one by one are compared with each other)."""
    from parc.hub.reader import is_hub_spec, open_repo, parse_hub_spec
    from parc.hub.weightdiff import hub_revisions, local_revisions, neox_revisions
    from parc.store.neox_raw import tags
    from parc.study.sources.runs import split_runs

    raw: Dict[Path, List[Path]] = {}
    for item in split_runs(runs):
        if item.startswith("neox:"):
            for tag in tags(Path(item.removeprefix("neox:"))):
                raw.setdefault(tag.resolve().parent, []).append(tag.resolve())
        elif is_hub_spec(item):
            spec = parse_hub_spec(item, "runs")
            if spec.revision is not None:
                raise ParcError(
                    f"runs={item}: diffs compares every numbered revision of a repo: give hub:{spec.repo_id}"
                )
            yield (
                item,
                spec.repo_id.replace("/", "--"),
                hub_revisions(open_repo(spec.repo_id, branch, what=f"runs={item}")),
            )
        else:
            if not Path(item).is_dir():
                raise ParcError(f"runs={item}: no such directory; pass a run's output_dir or hub:<org>/<name>")
            yield str(Path(item).resolve()), Path(item).resolve().name, local_revisions(Path(item))
    for save, found in raw.items():
        yield f"neox:{save}", save.name, neox_revisions(sorted(set(found)))


def run_diffs(
    runs: str, branch: Optional[str] = None, tolerance: Optional[float] = None, out: Optional[Path] = None, echo=print
) -> None:
    """Per-layer weight change of every revision of `runs` (run dirs, hub:org/name or neox:<dir>; comma-separated)."""
    import pandas as pd

    from parc.hub.weightdiff import DEFAULT_TOLERANCE, render, weight_diffs
    from parc.study.dynamics.figures import diffs_figure

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    out = prepare_out(out, runs)
    rows, revisions = [], []
    for source, name, found in diff_sources(runs, branch):
        diffs = weight_diffs(found, tolerance)
        echo(f"{source}:\n{render(diffs)}")
        frame = pd.DataFrame(diffs["rows"]).assign(source=source)
        rows.append(frame)
        revisions.append(
            pd.DataFrame(diffs["revisions"]).assign(source=source, flags=lambda f: f["flags"].map("; ".join))
        )
        diffs_figure(frame, out, name)
    write_table(pd.concat(rows, ignore_index=True), out / "diffs.parquet")
    write_table(pd.concat(revisions, ignore_index=True), out / "diffs-revisions.parquet")
    echo(f"parc.dynamics diffs: -> {out / 'diffs.parquet'}, {out / 'diffs-revisions.parquet'}")


def run_outliers(
    runs: str, evals: Optional[Path] = None, k: float = 6.0, out: Optional[Path] = None, echo=print
) -> None:
    """Runs whose loss (or evaluation) curves leave their seeds' band by more than `k` robust SDs."""
    from parc.study.dynamics.outlier_table import outlier_table

    if k <= 0:
        raise ParcError(f"k={k} must be positive (robust SDs)")
    out = prepare_out(out, runs)
    table = outlier_table(runs.split(","), Path(evals) if evals else None, k)
    write_table(table, out / "outliers.parquet")
    flagged = table[table["flagged"]]
    for _, row in flagged.iterrows():
        echo(
            f"OUTLIER {row['run']} ({row['arch']} seed {row['seed']}) {row['series']}: z={row['max_z']:+.1f} at "
            f"step {row['at_step']}, first over k={k:g} at step {row['first_step']}"
        )
    echo(
        f"parc.dynamics outliers: {len(flagged)} of {len(table)} curves leave their seeds' band -> "
        f"{out / 'outliers.parquet'}"
    )
