"""parc.phases against independent computations: numpy z-scores, Pearson, ranks, least squares, corrcoef."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from parc.store.fileio import sha256_file
from parc.study.phases.context_similarity import context_similarities, read_vectors
from parc.study.phases.statistics import NOT_PEAKED, phase_order_holds, phase_peaks, run_phases
from parc.study.phases.stimuli import Stimulus, write_stimuli

from conftest import run_cli

N_STIMULI = 60
STEPS = (0, 1, 4, 16)
SEEDS = (0, 1)


def rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks  # continuous data: no ties


def pearson(a, b) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def z(values) -> np.ndarray:
    return (values - values.mean()) / values.std()


@pytest.fixture
def analysis(tmp_path):
    """An analysis directory as parc.surprisal and parc.ngrams leave it, with synthetic numbers."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"]
    stimuli = []
    for i in range(N_STIMULI):
        chosen = list(rng.choice(words, size=6))
        stimuli.append(Stimulus(i, " ".join(["The", *chosen[:-1]]), chosen[-1], "", "train" if i % 3 else "val"))
    stimuli = [Stimulus(s.id, s.context, s.target, f"{s.context} {s.target}", s.split) for s in stimuli]
    path = tmp_path / "set.stims"
    write_stimuli(path, stimuli)
    grams = rng.normal(size=(N_STIMULI, 5)).cumsum(axis=1)  # correlated orders, like real n-grams
    num_tokens = rng.integers(1, 4, size=N_STIMULI)  # rarer words (low 1-gram) split into more tokens
    num_tokens[grams[:, 0] < np.quantile(grams[:, 0], 0.3)] += 1
    ngrams = pd.DataFrame(
        [{"stimulus_id": i, "order": o + 1, "logprob": grams[i, o] - 10} for i in range(N_STIMULI) for o in range(5)]
    )
    rows = []
    for arch in ("mamba", "pythia"):
        for seed in SEEDS:
            for step in STEPS:
                weights = np.exp(-((np.log2(step + 1) - np.array([0.5, 1.5, 2.5, 3.0, 3.5])) ** 2))
                lm = grams @ weights + rng.normal(scale=0.5, size=N_STIMULI) - 2.0 * num_tokens
                rows += [
                    {
                        "arch": arch,
                        "seed": seed,
                        "step": step,
                        "stimulus_id": i,
                        "surprisal": -lm[i],
                        "num_tokens": int(num_tokens[i]),
                    }
                    for i in range(N_STIMULI)
                ]
    out = tmp_path / "analysis"
    out.mkdir()
    surprisal = pd.DataFrame(rows)
    surprisal.to_parquet(out / "surprisal.parquet")
    ngrams.to_parquet(out / "ngrams.parquet")
    (out / "ngrams.json").write_text(json.dumps({"stimuli": str(path), "stimuli_sha256": sha256_file(path)}))
    return out, path, stimuli, grams, surprisal


def test_tables_match_numpy(analysis):
    out, path, stimuli, grams, surprisal = analysis
    run_phases(out, log=lambda line: None)
    correlations = pd.read_csv(out / "correlations.csv")
    regressions = pd.read_csv(out / "regressions.csv")
    assert list(correlations.columns) == [
        "arch",
        "seed",
        "step",
        "control",
        "predictor",
        "split",
        "pearson_r",
        "spearman_rho",
    ]
    assert list(regressions.columns) == ["arch", "seed", "step", "formula", "r2_train", "r2_val"]
    # per split: none (5 orders + neg_num_tokens), single_token (5), partial (5)
    assert len(correlations) == 2 * len(SEEDS) * len(STEPS) * 16 * 2 and len(regressions) == 2 * len(SEEDS) * len(STEPS)
    split = np.array([s.split for s in stimuli])
    train, val = split == "train", split == "val"
    zgrams = np.stack([z(grams[:, o]) for o in range(5)], axis=1)
    for (arch, seed, step), group in surprisal.groupby(["arch", "seed", "step"]):
        lm = z(-group.sort_values("stimulus_id")["surprisal"].to_numpy())
        for order in range(1, 6):
            row = correlations[
                (correlations.arch == arch)
                & (correlations.seed == seed)
                & (correlations.step == step)
                & (correlations.predictor == f"{order}gram")
                & (correlations.split == "train")
                & (correlations.control == "none")
            ].iloc[0]
            assert row.pearson_r == pytest.approx(pearson(lm[train], zgrams[train, order - 1]), abs=1e-10)
            assert row.spearman_rho == pytest.approx(
                pearson(rank(lm[train]), rank(zgrams[train, order - 1])), abs=1e-10
            )
        design = np.column_stack([np.ones(train.sum()), zgrams[train, 0], zgrams[train, 4]])
        coef, *_ = np.linalg.lstsq(design, lm[train], rcond=None)
        fitted = design @ coef
        r2_train = 1 - ((lm[train] - fitted) ** 2).sum() / ((lm[train] - lm[train].mean()) ** 2).sum()
        predicted = np.column_stack([np.ones(val.sum()), zgrams[val, 0], zgrams[val, 4]]) @ coef
        r2_val = 1 - ((lm[val] - predicted) ** 2).sum() / ((lm[val] - lm[val].mean()) ** 2).sum()
        row = regressions[(regressions.arch == arch) & (regressions.seed == seed) & (regressions.step == step)].iloc[0]
        assert row.formula == "lm ~ gram1 + gram5"
        assert row.r2_train == pytest.approx(r2_train, abs=1e-10) and row.r2_val == pytest.approx(r2_val, abs=1e-10)
    agreement = pd.read_csv(out / "agreement.csv")
    assert len(agreement) == len(STEPS) * 6  # 4 runs: 6 pairs per step
    final = surprisal[surprisal.step == STEPS[-1]]
    a = final[(final.arch == "mamba") & (final.seed == 0)].sort_values("stimulus_id")["surprisal"].to_numpy()
    b = final[(final.arch == "pythia") & (final.seed == 1)].sort_values("stimulus_id")["surprisal"].to_numpy()
    row = agreement[
        (agreement.step == STEPS[-1]) & (agreement.run_a == "mamba-seed0") & (agreement.run_b == "pythia-seed1")
    ]
    assert row.pearson_r.iloc[0] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    for name in ("phases", "r2", "agreement", "agreement_final"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.pdf").is_file()


def test_token_count_controls_match_the_formulas(analysis):
    """neg_num_tokens, single-token and partial correlations against a direct numpy/scipy computation; the
    partial r by the textbook formula (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))."""
    from scipy import stats

    out, path, stimuli, grams, surprisal = analysis
    run_phases(out, log=lambda line: None)
    correlations = pd.read_csv(out / "correlations.csv")
    split = np.array([s.split for s in stimuli])
    for (arch, seed, step), group in surprisal.groupby(["arch", "seed", "step"]):
        group = group.sort_values("stimulus_id")
        lm, tokens = -group["surprisal"].to_numpy(), group["num_tokens"].to_numpy().astype(float)
        mine = correlations[(correlations.arch == arch) & (correlations.seed == seed) & (correlations.step == step)]
        for name in ("train", "val"):
            rows = mine[mine.split == name].set_index(["control", "predictor"])
            chosen = split == name
            x, zt = lm[chosen], tokens[chosen]
            assert rows.loc[("none", "neg_num_tokens"), "pearson_r"] == pytest.approx(pearson(x, -zt), abs=1e-10)
            assert ("partial", "neg_num_tokens") not in rows.index and (
                "single_token",
                "neg_num_tokens",
            ) not in rows.index
            single = zt == 1
            for order in range(1, 6):
                y = grams[chosen, order - 1]
                r_xy, r_xz, r_yz = pearson(x, y), pearson(x, zt), pearson(y, zt)
                partial = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
                assert rows.loc[("partial", f"{order}gram"), "pearson_r"] == pytest.approx(partial, abs=1e-10)
                rx, ry, rz = (stats.rankdata(v) for v in (x, y, zt))
                r_xy, r_xz, r_yz = pearson(rx, ry), pearson(rx, rz), pearson(ry, rz)
                rank_partial = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
                assert rows.loc[("partial", f"{order}gram"), "spearman_rho"] == pytest.approx(rank_partial, abs=1e-10)
                assert rows.loc[("single_token", f"{order}gram"), "pearson_r"] == pytest.approx(
                    pearson(x[single], y[single]), abs=1e-10
                )
                assert rows.loc[("single_token", f"{order}gram"), "spearman_rho"] == pytest.approx(
                    pearson(rank(x[single]), rank(y[single])), abs=1e-10
                )
    confound = correlations[(correlations.predictor == "neg_num_tokens") & (correlations.split == "train")]
    assert confound.pearson_r.min() > 0.3  # the fixture's LM carries -2 nats per token: the confound shows
    peaks = pd.read_csv(out / "phase_peaks.csv")
    assert set(peaks.control) == {"none", "single_token", "partial"}
    assert "neg_num_tokens" not in set(peaks.predictor)


def test_rerun_reuses_parts_and_replaces_changed_ones(analysis):
    out, *_ = analysis
    run_phases(out, log=lambda line: None)
    parts = {p: p.stat().st_mtime_ns for p in (out / "parts").rglob("*.parquet")}
    lines = []
    run_phases(out, log=lines.append)
    assert any(
        f"({len(list((out / 'parts' / 'correlations').glob('*.parquet')))} already done)" in line for line in lines
    )
    assert {p: p.stat().st_mtime_ns for p in parts} == parts  # correlations, regressions and agreement alike
    surprisal = pd.read_parquet(out / "surprisal.parquet")
    changed = (surprisal.arch == "pythia") & (surprisal.seed == 1) & (surprisal.step == 4)
    surprisal.loc[changed, "surprisal"] = surprisal.loc[changed, "surprisal"].to_numpy()[::-1]
    surprisal.to_parquet(out / "surprisal.parquet")
    run_phases(out, log=lambda line: None)
    correlations = pd.read_csv(out / "correlations.csv")
    assert len(correlations) == 2 * len(SEEDS) * len(STEPS) * 32  # the changed checkpoint's old rows are gone
    assert len(list((out / "parts" / "correlations").glob("*.parquet"))) == 2 * len(SEEDS) * len(STEPS)
    assert len(list((out / "parts" / "agreement").glob("*.parquet"))) == 1


def test_phase_peaks_and_order():
    rows = [
        {"arch": "a", "seed": s, "step": step, "predictor": p, "split": "train", "pearson_r": r}
        for s in (0, 1)
        for p, curve in {
            "1gram": [0.2, 0.9, 0.5, 0.3],
            "2gram": [0.1, 0.5, 0.8, 0.4],
            "3gram": [0.0, 0.2, 0.4, 0.9],
        }.items()
        for step, r in zip((0, 10, 20, 40), curve)
    ]
    peaks = phase_peaks(pd.DataFrame(rows))
    assert peaks.set_index("predictor").status.to_dict() == {"1gram": "peaked", "2gram": "peaked", "3gram": NOT_PEAKED}
    peaked = peaks[peaks.status == "peaked"]
    assert dict(zip(peaked.predictor, peaked.peak_step)) == {"1gram": 10, "2gram": 20}
    assert peaked.set_index("predictor").decline.to_dict() == pytest.approx({"1gram": 0.6, "2gram": 0.4})
    assert phase_order_holds(peaks, "a") is True  # 3-gram still rising counts as later


def test_a_maximum_at_the_last_step_is_not_a_peak():
    rows = [
        {
            "arch": "a",
            "seed": s,
            "step": step,
            "control": "partial",
            "predictor": p,
            "split": "train",
            "pearson_r": r + 0.01 * s,
        }
        for s in (0, 1)
        for p, curve in {
            "1gram": [0.0, 0.3, 0.6, 0.9],
            "2gram": [0.0, 0.2, 0.4, 0.5],
            "3gram": [0.0, 0.5, 0.4, 0.3],
        }.items()
        for step, r in zip((0, 10, 20, 40), curve)
    ]
    peaks = phase_peaks(pd.DataFrame(rows)).set_index("predictor")
    for still_rising in ("1gram", "2gram"):
        assert peaks.loc[still_rising, "status"] == NOT_PEAKED and pd.isna(peaks.loc[still_rising, "peak_step"])
        assert peaks.loc[still_rising, "decline"] == 0 and peaks.loc[still_rising, "final_step"] == 40
    assert peaks.loc["3gram", "status"] == "peaked" and peaks.loc["3gram", "peak_step"] == 10
    assert phase_order_holds(peaks.reset_index(), "a", "partial") is False  # 1-gram never peaked: no order
    assert phase_order_holds(peaks.reset_index(), "a", "none") is None


def test_context_similarity_is_cosine_of_mean_context(tmp_path):
    vectors = {"the": [1.0, 0.0, 0.0], "cat": [0.0, 2.0, 0.0], "sat": [1.0, 1.0, 1.0]}
    path = tmp_path / "v.vec"
    path.write_text("4 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()) + "dog 0 0 1\n")
    found = read_vectors(path, {"the", "cat", "sat", "unknown"})
    assert set(found) == {"the", "cat", "sat"}
    table = context_similarities([(0, ["the", "cat", "sat"]), (1, ["unknown", "the"])], found)
    mean = (np.array(vectors["the"]) + np.array(vectors["cat"])) / 2
    target = np.array(vectors["sat"])
    expected = mean @ target / np.linalg.norm(mean) / np.linalg.norm(target)
    assert table.context_similarity.iloc[0] == pytest.approx(expected)
    assert table.context_similarity.iloc[1] == pytest.approx(expected)  # no context vector: the mean


def test_similarities_by_hand_on_tiny_vectors():
    """1 - cosine distance to the plain and the position-weighted (1/3, 2/3: nearer weighs more) context mean."""
    from scipy.spatial.distance import cosine

    vectors = {
        "a": np.array([1.0, 0.0]),
        "b": np.array([0.0, 1.0]),
        "t": np.array([1.0, 2.0]),
        "c": np.array([3.0, 4.0]),
    }
    table = context_similarities([(0, ["a", "b", "t"]), (1, ["b", "a", "oov", "c"]), (2, ["c", "t"])], vectors)
    # stimulus 0: mean (0.5, 0.5) -> cos 45 deg to (1, 2) = 3 / (sqrt(0.5) sqrt(5)); weighted (1/3, 2/3)
    assert table.context_similarity[0] == pytest.approx(1.5 / (np.sqrt(0.5) * np.sqrt(5)))
    assert table.context_similarity_weighted[0] == pytest.approx((1 / 3 + 4 / 3) / (np.sqrt(5 / 9) * np.sqrt(5)))
    assert table.context_similarity_weighted[0] == pytest.approx(1 - cosine([1 / 3, 2 / 3], [1, 2]))
    # stimulus 1: "oov" has no vector, so it drops out but keeps its position: weights 1, 2 of b, a
    assert table.context_similarity[1] == pytest.approx(1 - cosine([0.5, 0.5], [3, 4]))
    assert table.context_similarity_weighted[1] == pytest.approx(1 - cosine([2 / 3, 1 / 3], [3, 4]))
    assert table.context_similarity[2] == pytest.approx(1.0 - cosine([3, 4], [1, 2]))
    assert table.context_similarity_weighted[2] == table.context_similarity[2]  # one word: same mean


def test_fasttext_bin_trained_offline_is_deterministic_and_gives_subword_vectors(tmp_path):
    """gensim FastText, one worker and a fixed seed: two processes with other hash seeds write the same
    vectors; the .bin read back gives every word (an unseen one from its character n-grams) a vector."""
    import os
    import subprocess
    import sys

    pytest.importorskip("gensim")
    script = (
        "import sys\nfrom pathlib import Path\nfrom parc.study.phases.context_similarity import train_vectors\n"
        "text = [('the cat sat on the mat and the dog sat on the log ' * 3).split()] * 40\n"
        "train_vectors(text, Path(sys.argv[1]), {'vector_size': 8, 'window': 3, 'min_count': 1, "
        "'epochs': 3, 'sg': 0, 'seed': 0}, log=lambda line: None)\n"
    )
    paths = []
    for hash_seed in ("1", "2"):
        path = tmp_path / f"v{hash_seed}.bin"
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        paths.append(path)
    words = {"cat", "mat", "cats"}  # "cats" never occurs: fastText builds it from subwords
    first, second = (read_vectors(path, words) for path in paths)
    assert set(first) == words and all(np.array_equal(first[w], second[w]) for w in words)
    assert all(np.linalg.norm(first[w]) > 0 for w in words)
    from scipy.spatial.distance import cosine

    vectors = read_vectors(paths[0], {"the", "cat", "cats"})
    table = context_similarities([(0, ["the", "cat", "cats"])], vectors)
    assert table.context_similarity[0] == pytest.approx(
        1 - cosine((vectors["the"] + vectors["cat"]) / 2, vectors["cats"])
    )


def test_context_regression_when_vectors_given(analysis, tmp_path):
    out, path, stimuli, *_ = analysis
    rng = np.random.default_rng(3)
    words = sorted({w for s in stimuli for w in [*s.context.split(), s.target]})
    (tmp_path / "v.vec").write_text(
        f"{len(words)} 4\n" + "".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=4))}\n" for w in words)
    )
    run_phases(out, vectors=tmp_path / "v.vec", log=lambda line: None)
    regressions = pd.read_csv(out / "regressions.csv")
    context = "lm ~ gram1 + gram5 + context_similarity + context_similarity_weighted"
    assert set(regressions.formula) == {"lm ~ gram1 + gram5", context}
    wide = regressions.pivot_table(index=["arch", "seed", "step"], columns="formula", values="r2_train")
    assert (wide[context] >= wide["lm ~ gram1 + gram5"] - 1e-12).all()


def test_cli_missing_inputs_are_one_line_errors(analysis, tmp_path):
    out, *_ = analysis
    (out / "surprisal.parquet").unlink()
    for args in ([f"out={out}"], [f"out={tmp_path / 'nothing'}"], ["bogus=1"], []):
        result = run_cli("parc.phases", *args)
        assert result.returncode == 2 and result.stderr.startswith("error: "), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "correlations.csv").exists() and not (tmp_path / "nothing").exists()


def test_a_checkpoint_scored_twice_counts_once():
    from parc.study.phases.statistics import one_score_per_checkpoint

    first = pd.DataFrame(
        {
            "arch": "pythia",
            "seed": 0,
            "step": 16,
            "stimulus_id": [0, 1, 2],
            "surprisal": [1.0, 2.0, 3.0],
            "commit": "old",
        }
    )
    second = first.assign(surprisal=[4.0, 5.0, 6.0], commit="new")
    other = first.assign(step=32)
    kept = one_score_per_checkpoint(pd.concat([first, other, second], ignore_index=True), log=lambda line: None)
    assert len(kept) == 6
    assert kept[kept.step == 16].surprisal.tolist() == [4.0, 5.0, 6.0]
    assert kept[kept.step == 32].surprisal.tolist() == [1.0, 2.0, 3.0]
