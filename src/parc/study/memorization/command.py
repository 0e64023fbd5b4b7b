"""parc.memorization's job: read the panel, run one analysis, write its tables and figures, print a summary.

profile  evals= [evaluation=memorization] [units=train|canary] [outcome=nll] [control=never|notyet] [samples=200]
         [out=]  -> profile.parquet (cells), profile-summary.parquet, profile-seeds.parquet,
                    profile-correlation.parquet, profile.png/pdf
order    evals= [evaluation=] [block=512] [step=] [out=] -> order.parquet, order-counts.parquet,
                    order-seeds.parquet, order-qq.png/pdf, order-counts.png/pdf
predict  evals= [evaluation=] [units=] [out=] -> predict.parquet, predict-seeds.parquet, predict.png/pdf
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError


def write_table(frame, path: Path) -> Path:
    from parc.store.fileio import atomic_write

    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def prepare(evals: Path, evaluation: str, out: Optional[Path], samples: int = 0):
    """(panel, out dir): the bootstrap count, the panel and the out dir checked before any work; default
    <evals>/memorization."""
    if samples < 0:
        raise ParcError(f"samples={samples}: the number of bootstrap draws over units is >= 0")
    from parc.study.memorization.panel import read_panel
    from parc.training.trainer import check_writable

    panel = read_panel(Path(evals), evaluation)
    out = Path(out) if out is not None else Path(evals) / "memorization"
    try:
        check_writable(out)
    except ParcError:
        raise ParcError(f"cannot write to out={out}: choose a writable out= or fix its permissions") from None
    return panel, out


def finish(name: str, tables: dict, figures: List[Path], out: Path, echo) -> None:
    written = [write_table(frame, out / f"{stem}.parquet") for stem, frame in tables.items()]
    echo(f"parc.memorization {name}: -> {', '.join(str(p) for p in written)} (+{len(figures)} figure files)")


def run_profile(
    evals: Path,
    evaluation: str = "memorization",
    units: str = "train",
    outcome: str = "nll",
    control: str = "never",
    samples: int = 200,
    out: Optional[Path] = None,
    echo=print,
) -> None:
    """ATT(g, t) memorisation profiles by difference-in-differences, their summaries, seed bands, correlations."""
    from parc.study.memorization.figures import profile_figure
    from parc.study.memorization.profile import profile_correlation, profile_tables, seed_bootstrap

    panel, out = prepare(evals, evaluation, out, samples)
    cells, summary = profile_tables(panel, units, outcome, control, samples)
    seeds = seed_bootstrap(summary, ["arch", "summary", "key"])
    correlation = profile_correlation(cells)
    for (arch, kind), rows in seeds.groupby(["arch", "summary"], sort=True):
        echo(f"{arch} {kind}: mean memorisation {rows['mean'].mean():+.4g} over {len(rows)} keys")
    for pair, rows in correlation.groupby("pair"):
        echo(f"profile correlation across {pair}: median r {rows['r'].median():.3f} ({len(rows)} pairs)")
    tables = {"profile": cells, "profile-summary": summary, "profile-seeds": seeds}
    finish("profile", tables | {"profile-correlation": correlation}, profile_figure(summary, out), out, echo)


def run_order(
    evals: Path,
    evaluation: str = "memorization",
    block: int = 512,
    step: Optional[int] = None,
    out: Optional[Path] = None,
    echo=print,
) -> None:
    """Pythia's order test: counts per block, Poisson Q-Q figure, dispersion / trend / KS tests, seed bands."""
    from parc.study.memorization.figures import counts_figure, qq_figure
    from parc.study.memorization.order import order_tables
    from parc.study.stats import seed_bands

    panel, out = prepare(evals, evaluation, out)
    tests, counts = order_tables(panel, block, step)
    metrics = ["mean", "dispersion", "trend", "ks", "dispersion_p", "trend_p", "ks_p"]
    long = tests.melt(id_vars=["arch", "seed"], value_vars=metrics, var_name="metric")
    seeds = seed_bands(long, ["arch", "metric"])
    for _, row in tests.iterrows():
        echo(
            f"{row['arch']} seed {row['seed']} step {row['step']}: {row['events']} memorized in {row['n_blocks']} "
            f"blocks; dispersion {row['dispersion']:.3f} (p {row['dispersion_p']:.3g}), trend {row['trend']:+.1%} "
            f"(p {row['trend_p']:.3g}), KS {row['ks']:.3f} (p {row['ks_p']:.3g})"
        )
    figures = qq_figure(counts, out) + counts_figure(counts, out)
    finish("order", {"order": tests, "order-counts": counts, "order-seeds": seeds}, figures, out, echo)


def run_predict(
    evals: Path, evaluation: str = "memorization", units: str = "train", out: Optional[Path] = None, echo=print
) -> None:
    """Precision / recall of checkpoints, seeds and architectures predicting memorized at the end."""
    from parc.study.memorization.figures import predict_figure
    from parc.study.memorization.predict import predict_table
    from parc.study.memorization.profile import seed_bootstrap

    panel, out = prepare(evals, evaluation, out)
    table = predict_table(panel, units)
    long = table.melt(
        id_vars=["arch", "seed", "kind", "predictor_arch", "predictor_step"], value_vars=["precision", "recall", "f1"],
        var_name="metric",
    )  # fmt: skip
    seeds = seed_bootstrap(long, ["arch", "kind", "predictor_arch", "predictor_step", "metric"], value="value")
    final = seeds[(seeds["kind"] != "checkpoint") & (seeds["metric"] != "f1")]
    for _, row in final.iterrows():
        echo(f"{row['predictor_arch']} -> {row['arch']} ({row['kind']}) {row['metric']} {row['mean']:.3f}")
    finish("predict", {"predict": table, "predict-seeds": seeds}, predict_figure(table, out), out, echo)


def run_canaries(
    evals: Path, evaluation: str = "memorization", strong: int = 16, out: Optional[Path] = None, echo=print
) -> None:
    """Exposure and extraction of canaries by repetition count and window, against the references; the checks."""
    from parc.study.memorization.canaries import checks, group_table, seed_table
    from parc.study.memorization.figures import canary_figures

    if strong < 1:
        raise ParcError(f"strong={strong}: the repetition count from which canaries count as strong is >= 1")
    panel, out = prepare(evals, evaluation, out)
    groups = group_table(panel)
    seeds = seed_table(groups)
    verdicts = checks(groups, seeds, strong)
    for _, row in verdicts.iterrows():
        echo(describe_check(row))
    tables = {"canaries": groups, "canaries-seeds": seeds, "canaries-checks": verdicts}
    finish("canaries", tables, canary_figures(groups, out), out, echo)


def describe_check(row) -> str:
    """One line per check: what, where, the seed mean with its band, and the verdict."""
    where = f"{row['arch']}" + ("" if row["window"] != row["window"] else f" window {int(row['window'])}")
    where += "" if row["repeats"] != row["repeats"] else f" {int(row['repeats'])}x"
    band = "" if row["low"] != row["low"] else f" [{row['low']:.3g}, {row['high']:.3g}]"
    extra = "" if row["reference"] != row["reference"] else f" (references {row['reference']:.3g})"
    verdict = {True: "holds", False: "DOES NOT HOLD", None: "reported"}[
        None if row["holds"] is None else bool(row["holds"])
    ]
    return f"{row['check']}: {where} at step {int(row['step'])}: {row['value']:.4g}{band}{extra}: {verdict}"


def run_branch(
    evals: Path,
    evaluation: str = "memorization",
    outcome: str = "nll",
    samples: int = 200,
    out: Optional[Path] = None,
    echo=print,
) -> None:
    """Each branch against its parent, unit by unit: the difference in differences of moved units vs controls."""
    from parc.study.memorization.branch import branch_table
    from parc.study.memorization.figures import branch_figure
    from parc.study.memorization.panel import check_outcome

    panel, out = prepare(evals, evaluation, out, samples)
    check_outcome(panel, outcome)
    table = branch_table(panel, outcome, samples)
    last = table[table["step"] == table.groupby(["arch", "seed", "intervention"])["step"].transform("max")]
    for _, row in last.iterrows():
        echo(
            f"{row['arch']} seed {row['seed']} ({row['intervention']}) step {row['step']}: {row['group']} (n={row['n']}) "
            f"delta {outcome} {row['delta']:+.4f}, DiD vs controls {row['did']:+.4f} [{row['did_low']:+.4f}, "
            f"{row['did_high']:+.4f}]"
        )
    finish("branch", {"branch": table}, branch_figure(table, out), out, echo)
