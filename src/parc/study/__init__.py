"""The study layer: evaluate, score and analyse the checkpoints a grid wrote, and draw them with seed bands.

It reads only what the trainer publishes (run directories with `checkpoint-N/` and their manifests, or Hub
revisions) and shares one results layout and one plotting module:

    results.py    TidyTable: crash-safe, multi-writer tidy tables (one part file per unit of work)
    stats.py      seed aggregation (mean with 95 % t-interval, median with IQR) and bootstraps
    plots.py      drawing primitives: metric-vs-step figures with seed bands (PNG and PDF)
    sources/      `runs=` / `steps=` -> CheckpointRef (local runs, Hub revisions, identity), weights loaded once
    evaluations/  held-out loss, lm-eval tasks, memorization; their loop, greedy decoding, comparisons, figures
    phases/       the Parc paper's analysis: stimulus sets, surprisal, n-grams, context similarity, statistics,
                  figures, and the mini-Parc pipeline (parc.study)
    dynamics/     parc.dynamics: seed noise, representation similarity (CKA), outlier tables
    memorization/ parc.memorization: DiD memorisation profiles, Pythia's order test, predictability

Inside, the root is the bottom, then sources/, then evaluations/, phases/ and memorization/ (side by side),
then dynamics/ (tests/test_layout.py keeps it so). The study layer sits on top of Parc: it may import every
other package, none imports it.
"""

from parc import lazy_exports

PUBLIC = {
    "run_evaluate": "evaluations.command",
    "compare_evals": "evaluations.compare:compare",
    "describe_comparison": "evaluations.compare:describe",
    "parse_filters": "evaluations.compare",
    "run_ngrams": "phases.ngrams",
    "run_phases": "phases.statistics",
    "run_surprisal": "phases.surprisal_checkpoints",
    "DEFAULT_SIZES": "phases.stimulus_sets",
    "PAPER_SEED": "phases.stimulus_sets",
    "build_stimuli": "phases.stimulus_sets",
    "find_runs": "evaluations.learning_curves",
    "plot_curves": "evaluations.learning_curves",
    "plot_evals": "evaluations.figures",
    "plot_runs": "evaluations.learning_curves",
    "ModelCache": "sources.model_cache",
    "resolve_runs": "sources.runs",
    "run_study": "phases.pipeline",
    "run_noise": "dynamics.command",
    "run_similarity": "dynamics.command",
    "run_diffs": "dynamics.command",
    "run_outliers": "dynamics.command",
    "run_profile": "memorization.command",
    "run_order": "memorization.command",
    "run_predict": "memorization.command",
    "run_canaries": "memorization.command",
    "run_branch": "memorization.command",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
