"""The study layer: evaluate, score and analyse the checkpoints a grid wrote, and draw them with seed bands.

It reads only what the trainer publishes (run directories with `checkpoint-N/` and their manifests, or Hub
revisions) and shares one results layout and one plotting module:

    sources.py   `runs=` / `steps=` -> CheckpointRef (refs.py: arch, size, seed, shard, data_seed, step,
                 provenance); modelcache.py loads a checkpoint's weights once, reusing one module per architecture
    results.py   TidyTable: crash-safe, multi-writer tidy tables (one part file per unit of work)
    stats.py     seed aggregation (mean with 95 % t-interval, median with IQR) and bootstraps
    plots.py     metric-vs-step figures with seed bands (PNG and PDF)

dynamics/ (parc.dynamics) decomposes seed noise, compares representations (CKA), diffs checkpoint weights
and raises the seed outlier alarm. Evaluations (held-out loss, lm-eval tasks, memorization) and the Parc paper's analysis (surprisal,
n-grams, behavioural phases) are built on these. The study layer sits on top: it may import every other
package, none imports it.
"""

from parc import lazy_exports

PUBLIC = {"OWN_EVALUATE_ARGS": "evaluate_run", "run_evaluate": "evaluate_run", "compare_evals": "compare:compare",
          "describe_comparison": "compare:describe", "parse_filters": "compare", "run_ngrams": "ngrams",
          "run_phases": "phases", "run_surprisal": "surprisal_run", "DEFAULT_SIZES": "nawoco",
          "PAPER_SEED": "nawoco", "build_stimuli": "nawoco", "find_runs": "plots", "plot_curves": "plots",
          "plot_evals": "plots", "plot_runs": "plots", "ModelCache": "modelcache", "resolve_runs": "sources",
          "run_dynamics": "dynamics.command:run_dynamics"}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
