"""The Parc paper's statistics (calculate_results.py): how well n-grams predict a model's word probabilities.

Per checkpoint (arch, seed, step) of `<out>/surprisal.parquet`, joined by stimulus id with
`<out>/ngrams.parquet` and the stimuli's splits:

- every LM and heuristic column is z-scored over the stimuli (of log-probabilities: the LM column is
  -surprisal, the n-gram columns are stupid-backoff log-probabilities);
- Pearson and Spearman correlations (scipy) of the LM column with each n-gram order, on the train split
  (and on the val split, as extra rows) -> `correlations.csv` (arch, seed, step, control, predictor, split,
  pearson_r, spearman_rho). The target's token count confounds them: surprisal is summed over the target's
  tokens, so an untrained model's log-probability is ~ -num_tokens x log(vocab), and rarer words have more
  tokens. So every correlation is reported under three `control`s: `none` (the paper's numbers, plus the
  predictor `neg_num_tokens` = -num_tokens, which shows the confound itself), `single_token` (only targets of
  one token) and `partial` (partial correlation given num_tokens: both sides residualized on num_tokens with
  an intercept by least squares, then Pearson; Spearman the same on ranks);
- OLS (statsmodels) `LM ~ 1-gram + 5-gram + context similarity (unweighted and position-weighted)`, the
  paper's regression, whenever fastText vectors exist (`vectors=`, else `<out>/fasttext.bin` from
  `parc.ngrams vectors=true`; parc.study.phases.context_similarity), and `LM ~ 1-gram + 5-gram` beside it; fitted on train; R^2 on train, and on val as 1 - SS_res/SS_tot of the train fit's predictions
  -> `regressions.csv` (arch, seed, step, formula, r2_train, r2_val);
- agreement between models: at each step, the Pearson correlation of the surprisals of every pair of runs
  -> `agreement.csv` (step, run_a, run_b, arch_a, arch_b, pearson_r).

Tables are TidyTables with one part per checkpoint, keyed by a hash of that checkpoint's inputs, so a rerun
recomputes only what changed. Seeds are aggregated (mean, 95 % t-interval) where the tables are drawn.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from parc.errors import ParcError
from parc.study.results import TidyTable

CHECKPOINT = ["arch", "seed", "step"]
NGRAM_FORMULA = "lm ~ gram1 + gram5"
CONTEXT_FORMULA = "lm ~ gram1 + gram5 + context_similarity + context_similarity_weighted"
SPLITS = ("train", "val")
CONTROLS = ("none", "single_token", "partial")
TOKEN_PREDICTOR = "neg_num_tokens"
NOT_PEAKED = "not peaked (still rising)"
CORRELATION_COLUMNS = [*CHECKPOINT, "control", "predictor", "split", "pearson_r", "spearman_rho"]
PEAK_COLUMNS = [
    "arch",
    "control",
    "predictor",
    "status",
    "peak_step",
    "peak_r",
    "first_step",
    "first_r",
    "final_step",
    "final_r",
    "decline",
]
REGRESSION_COLUMNS = [*CHECKPOINT, "formula", "r2_train", "r2_val"]
AGREEMENT_COLUMNS = ["step", "run_a", "run_b", "arch_a", "arch_b", "pearson_r"]


def zscore(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def heuristics_frame(ngrams, splits, context_similarity=None):
    """One row per stimulus: split, gram1..gram5 (z-scored), context_similarity (z-scored) when given."""
    wide = ngrams.pivot(index="stimulus_id", columns="order", values="logprob")
    wide.columns = [f"gram{order}" for order in wide.columns]
    frame = splits.set_index("stimulus_id").join(wide, how="inner")
    if context_similarity is not None:
        frame = frame.join(context_similarity.set_index("stimulus_id"), how="inner")
    for column in frame.columns:
        if column != "split":
            frame[column] = zscore(frame[column])
    return frame.reset_index().sort_values("stimulus_id", kind="mergesort").reset_index(drop=True)


def residualize(values: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """`values` minus their least-squares fit on [1, covariate]."""
    design = np.column_stack([np.ones(len(values)), covariate])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def controlled_correlation(lm: np.ndarray, predictor: np.ndarray, num_tokens: np.ndarray, control: str):
    """(Pearson r, Spearman rho) of LM and one predictor under `control`; None when too few stimuli remain."""
    from scipy import stats

    if control == "single_token":
        single = num_tokens == 1
        lm, predictor = lm[single], predictor[single]
    if len(lm) < 3 or np.ptp(lm) == 0 or np.ptp(predictor) == 0:
        return None
    if control == "partial":
        ranks = [stats.rankdata(v) for v in (lm, predictor, num_tokens)]
        return (
            float(stats.pearsonr(residualize(lm, num_tokens), residualize(predictor, num_tokens))[0]),
            float(stats.pearsonr(residualize(ranks[0], ranks[2]), residualize(ranks[1], ranks[2]))[0]),
        )
    return float(stats.pearsonr(lm, predictor)[0]), float(stats.spearmanr(lm, predictor)[0])


def checkpoint_statistics(lm_logprob: np.ndarray, heuristics, formulas: List[str], num_tokens=None):
    """Correlation and regression rows (without the checkpoint columns) of one checkpoint.

    `lm_logprob` and `num_tokens` (the target's token count under the model's tokenizer; all 1 when not
    given) are aligned with the rows of `heuristics` (-surprisal of each stimulus)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    tokens = np.ones(len(lm_logprob)) if num_tokens is None else np.asarray(num_tokens, dtype=float)
    data = heuristics.assign(lm=zscore(lm_logprob), **{TOKEN_PREDICTOR: -tokens})
    grams = sorted(c for c in data.columns if c.startswith("gram"))
    correlations = []
    for split in SPLITS:
        part = data[data["split"] == split]
        if len(part) < 3:
            continue
        lm, part_tokens = part["lm"].to_numpy(), -part[TOKEN_PREDICTOR].to_numpy()
        for control in CONTROLS:
            predictors = grams + ([TOKEN_PREDICTOR] if control == "none" else [])
            for column in predictors:
                value = controlled_correlation(lm, part[column].to_numpy(dtype=float), part_tokens, control)
                if value is not None:
                    correlations.append(
                        {
                            "control": control,
                            "predictor": column if column == TOKEN_PREDICTOR else f"{column[4:]}gram",
                            "split": split,
                            "pearson_r": value[0],
                            "spearman_rho": value[1],
                        }
                    )
    train, val = data[data["split"] == "train"], data[data["split"] == "val"]
    regressions = []
    for formula in formulas:
        if len(train) < 4:
            break
        fit = smf.ols(formula, data=train).fit()
        regressions.append(
            {
                "formula": formula,
                "r2_train": float(fit.rsquared),
                "r2_val": r2_score(val["lm"].to_numpy(), fit.predict(val).to_numpy()) if len(val) > 1 else float("nan"),
            }
        )
    return (
        pd.DataFrame(correlations, columns=["control", "predictor", "split", "pearson_r", "spearman_rho"]),
        pd.DataFrame(regressions, columns=["formula", "r2_train", "r2_val"]),
    )


def r2_score(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Out-of-sample R^2: 1 - SS_res / SS_tot around the held-out mean."""
    residual = float(((actual - predicted) ** 2).sum())
    total = float(((actual - actual.mean()) ** 2).sum())
    return 1.0 - residual / total if total > 0 else float("nan")


def stimulus_splits(stimuli):
    import pandas as pd

    return pd.DataFrame({"stimulus_id": [s.id for s in stimuli], "split": [s.split for s in stimuli]})


def training_splits(splits):
    """Stimuli read without split information count as train (correlations only; no val R^2)."""
    from parc.study.phases.stimuli import UNSPLIT

    if (splits["split"] == UNSPLIT).all():
        return splits.assign(split="train")
    return splits


def checkpoint_key(arch: str, seed, step: int, lm_logprob: np.ndarray, inputs: str) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(lm_logprob, dtype="<f8").tobytes() + inputs.encode()).hexdigest()
    return f"{arch}|{seed}|{step}|{digest[:24]}"


def run_label(arch: str, seed) -> str:
    return f"{arch}-seed{seed}"


def compute_tables(out: Path, surprisal, heuristics, formulas: List[str], log=print) -> Dict[str, Path]:
    """Fill and publish correlations / regressions / agreement under `out`; parts already there are reused."""
    heuristics_digest = hashlib.sha256(heuristics.to_csv(index=False).encode()).hexdigest()
    inputs = json.dumps({"heuristics": heuristics_digest, "formulas": formulas, "controls": CONTROLS})
    correlations = TidyTable(out, "correlations", CORRELATION_COLUMNS)
    regressions = TidyTable(out, "regressions", REGRESSION_COLUMNS)
    ids = heuristics["stimulus_id"].to_numpy()
    wanted, done = set(), 0
    aligned = {}
    for (arch, seed, step), group in surprisal.groupby(CHECKPOINT, sort=True, dropna=False):
        by_id = group.set_index("stimulus_id")["surprisal"]
        missing = np.setdiff1d(ids, by_id.index.to_numpy())
        if len(missing):
            raise ParcError(
                f"surprisal.parquet has no surprisal of stimulus {missing[0]} for {arch} seed {seed} "
                f"step {step}: score the same stimuli as the n-grams (python -m parc.surprisal)"
            )
        lm = -by_id.loc[ids].to_numpy(dtype=float)
        tokens = group.set_index("stimulus_id")["num_tokens"].loc[ids].to_numpy(dtype=float)
        aligned[(arch, seed, step)] = lm
        key = checkpoint_key(arch, seed, step, np.concatenate([lm, tokens]), inputs)
        wanted.add(key)
        if correlations.done(key) and regressions.done(key):
            done += 1
            continue
        corr, reg = checkpoint_statistics(lm, heuristics, formulas, tokens)
        identity = {"arch": arch, "seed": seed, "step": step}
        correlations.write(key, corr.assign(**identity)[CORRELATION_COLUMNS])
        regressions.write(key, reg.assign(**identity)[REGRESSION_COLUMNS])
    for table in (correlations, regressions):
        for stale in set(table.keys()) - wanted:  # inputs changed: the old part describes other numbers
            table.part_path(stale).unlink()
    log(f"parc.phases: {len(wanted)} checkpoints ({done} already done)")
    agreement = agreement_table(aligned)
    paths = {"correlations": correlations.publish()[1], "regressions": regressions.publish()[1]}
    table = TidyTable(out, "agreement", AGREEMENT_COLUMNS)
    key = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()  # the same checkpoints, same inputs
    if not table.done(key):  # one part for all steps: cheap to recompute whole when anything changed
        for stale in table.keys():
            table.part_path(stale).unlink()
        table.write(key, agreement)
    paths["agreement"] = table.publish()[1]
    return paths


def agreement_table(aligned: Dict[tuple, np.ndarray]):
    """Pearson r between the surprisals of every pair of runs at each step both have."""
    import pandas as pd

    rows = []
    for step in sorted({key[2] for key in aligned}):
        runs = sorted((arch, seed) for arch, seed, s in aligned if s == step)
        if len(runs) < 2:
            continue
        matrix = np.corrcoef(np.stack([aligned[(arch, seed, step)] for arch, seed in runs]))
        for i, (arch_a, seed_a) in enumerate(runs):
            for j, (arch_b, seed_b) in enumerate(runs):
                if i < j:
                    rows.append(
                        {
                            "step": step,
                            "run_a": run_label(arch_a, seed_a),
                            "run_b": run_label(arch_b, seed_b),
                            "arch_a": arch_a,
                            "arch_b": arch_b,
                            "pearson_r": float(matrix[i, j]),
                        }
                    )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def phase_peaks(correlations):
    """Per arch, control and n-gram order: where the seed-mean train Pearson r peaks, and how it starts and ends.

    A maximum at the last step is no peak (the curve may still rise): its status is NOT_PEAKED and its
    peak_step empty. `decline` = peak_r - final_r (0 when not peaked)."""
    import pandas as pd

    train = correlations[(correlations["split"] == "train") & (correlations["predictor"] != TOKEN_PREDICTOR)]
    if "control" not in train.columns:
        train = train.assign(control="none")
    mean = train.groupby(["arch", "control", "predictor", "step"], as_index=False)["pearson_r"].mean()
    rows = []
    for (arch, control, predictor), group in mean.groupby(["arch", "control", "predictor"], sort=True):
        group = group.sort_values("step")
        best, first, final = group.loc[group["pearson_r"].idxmax()], group.iloc[0], group.iloc[-1]
        peaked = len(group) > 1 and best["step"] != final["step"]
        rows.append(
            {
                "arch": arch,
                "control": control,
                "predictor": predictor,
                "status": "peaked" if peaked else NOT_PEAKED,
                "peak_step": int(best["step"]) if peaked else None,
                "peak_r": float(best["pearson_r"]),
                "first_step": int(first["step"]),
                "first_r": float(first["pearson_r"]),
                "final_step": int(final["step"]),
                "final_r": float(final["pearson_r"]),
                "decline": float(best["pearson_r"] - final["pearson_r"]),
            }
        )
    return pd.DataFrame(rows, columns=PEAK_COLUMNS).astype({"peak_step": "Int64"})


def phase_order_holds(peaks, arch: str, control: str = "none") -> Optional[bool]:
    """Does `arch` peak on the 1-gram strictly before the 2-gram, and on the 2-gram strictly before the 3-gram?
    An order still rising at the last step counts as later than every peak (but never before another)."""
    chosen = peaks[(peaks["arch"] == arch) & (peaks["control"] == control)].set_index("predictor")
    if not {"1gram", "2gram", "3gram"} <= set(chosen.index):
        return None
    steps = {
        p: float("inf") if chosen.loc[p, "status"] == NOT_PEAKED else float(chosen.loc[p, "peak_step"])
        for p in ("1gram", "2gram", "3gram")
    }
    return bool(steps["1gram"] < steps["2gram"] < steps["3gram"])


def describe_peaks(peaks, arch: str, control: str) -> str:
    chosen = peaks[(peaks["arch"] == arch) & (peaks["control"] == control)]
    parts = [
        f"{row.predictor} {row.status}"
        + (
            f" at step {int(row.peak_step)} (r={row.peak_r:.2f}, then -{row.decline:.2f})"
            if row.status == "peaked"
            else f" (r={row.final_r:.2f} at step {row.final_step})"
        )
        for row in chosen.itertuples()
    ]
    order = phase_order_holds(peaks, arch, control)
    return (
        f"{arch} [{control}]: "
        + ", ".join(parts)
        + ("" if order is None else f"; 1-gram < 2-gram < 3-gram order {'holds' if order else 'does not hold'}")
    )


def read_inputs(out: Path, stimuli_arg: Optional[str]):
    """surprisal.parquet, ngrams.parquet and the stimuli they were computed for; one-line errors when absent."""
    import pandas as pd

    from parc.store.fileio import sha256_file
    from parc.study.phases.stimuli import parse_stimuli_arg, read_stimuli, set_name

    surprisal_path, ngrams_path, record_path = out / "surprisal.parquet", out / "ngrams.parquet", out / "ngrams.json"
    if not surprisal_path.is_file():
        raise ParcError(
            f"{surprisal_path} does not exist: score the stimuli first (python -m parc.surprisal "
            f"stimuli=... runs=... out={out})"
        )
    if not (ngrams_path.is_file() and record_path.is_file()):
        raise ParcError(
            f"{ngrams_path} does not exist: compute the n-grams first (python -m parc.ngrams "
            f"stimuli=... runs=... out={out})"
        )
    record = json.loads(record_path.read_text())
    if not stimuli_arg and not record.get("stimuli"):
        raise ParcError(f"which stimuli? pass stimuli= (the set {ngrams_path} was computed for)")
    (path,) = parse_stimuli_arg(stimuli_arg or record["stimuli"])[:1]
    stimuli = read_stimuli(path)
    if sha256_file(path) != record["stimuli_sha256"]:
        raise ParcError(
            f"{ngrams_path} was computed for other stimuli than {path}: rerun python -m parc.ngrams "
            f"stimuli={path} out={out}"
        )
    surprisal = pd.read_parquet(surprisal_path)
    if "num_tokens" not in surprisal.columns:
        raise ParcError(
            f"{surprisal_path} has no num_tokens column (the target's token count, needed for the "
            f"token-count controls): score the stimuli again with python -m parc.surprisal"
        )
    for column in ("stimuli", "set"):  # a table holding several stimulus sets: keep this one
        if column in surprisal.columns:
            surprisal = surprisal[surprisal[column] == set_name(path)]
    if surprisal.empty:
        raise ParcError(f"{surprisal_path} holds no surprisal of {path}: run python -m parc.surprisal stimuli={path}")
    return surprisal, pd.read_parquet(ngrams_path), stimuli, path


def one_score_per_checkpoint(surprisal, log=print):
    """A checkpoint scored twice (its manifest changed, e.g. when its training state was pruned) keeps the
    rows of its last-listed version, so every (arch, seed, step) has one surprisal per stimulus."""
    duplicated = surprisal.duplicated([*CHECKPOINT, "stimulus_id"], keep="last")
    if duplicated.any():
        twice = surprisal[duplicated][CHECKPOINT].drop_duplicates()
        log(
            f"parc.phases: {len(twice)} checkpoint(s) scored more than once (e.g. {twice.iloc[0].to_dict()}): "
            f"using the last-listed scores of each"
        )
        surprisal = surprisal[~duplicated]
    return surprisal


def run_phases(
    out: Optional[Path] = None,
    runs: Optional[str] = None,
    stimuli: Optional[str] = None,
    vectors: Optional[Path] = None,
    log=print,
) -> Dict[str, Path]:
    """The whole `python -m parc.phases` command: tables, figures and the phase peaks under `out` (default
    `<root of runs>/analysis`); `vectors`: fastText vectors (default `<out>/fasttext.bin` where it exists)."""
    from parc.store.fileio import atomic_write
    from parc.study.phases.figures import draw_all
    from parc.study.phases.ngrams import stimulus_words

    if out is None and not runs:
        raise ParcError("where are the results? pass runs=<runs or grid root> (reads <root>/analysis) or out=<dir>")
    if out is None:
        from parc.study.sources.runs import default_out

        out = default_out(runs, "analysis")
    out = Path(out)
    surprisal, ngrams, stimulus_set, _ = read_inputs(out, stimuli)
    surprisal = one_score_per_checkpoint(surprisal, log)
    similarity, formulas = None, [NGRAM_FORMULA]
    vectors = vectors or (out / "fasttext.bin" if (out / "fasttext.bin").is_file() else None)
    if vectors:
        from parc.study.phases.context_similarity import context_similarities, read_vectors

        words = stimulus_words(stimulus_set)
        found = read_vectors(Path(vectors), {w for _, ws in words for w in ws})
        similarity, formulas = context_similarities(words, found), [CONTEXT_FORMULA, NGRAM_FORMULA]
        log(f"parc.phases: context similarity from {vectors}: the regression is {CONTEXT_FORMULA}")
    else:
        log(
            "parc.phases: no fastText vectors (vectors=<.bin or .vec>, or parc.ngrams vectors=true): "
            "the context-similarity regression is skipped"
        )
    heuristics = heuristics_frame(ngrams, training_splits(stimulus_splits(stimulus_set)), similarity)
    paths = compute_tables(out, surprisal, heuristics, formulas, log=log)
    import pandas as pd

    tables = {name: pd.read_csv(path) for name, path in paths.items()}
    peaks = phase_peaks(tables["correlations"])
    paths["phase_peaks"] = atomic_write(out / "phase_peaks.csv", lambda tmp: peaks.to_csv(tmp, index=False))
    figures = draw_all(out, tables["correlations"], tables["regressions"], tables["agreement"])
    for arch in sorted(peaks["arch"].unique()):
        for control in CONTROLS:
            if ((peaks["arch"] == arch) & (peaks["control"] == control)).any():
                log(f"parc.phases: {describe_peaks(peaks, arch, control)}")
    log(f"parc.phases: tables and figures ({', '.join(sorted(figures))}) in {out}")
    return {**paths, **{f"figure:{k}": v[0] for k, v in figures.items()}}
