"""The study layer: evaluate, score and analyse the checkpoints a grid wrote, and draw them with seed bands.

It reads only what the trainer publishes (run directories with `checkpoint-N/` and their manifests, or Hub
revisions) and shares one results layout and one plotting module:

    sources.py   `runs=` / `steps=` -> CheckpointRef (arch, size, seed, shard, data_seed, step, provenance);
                 loading a checkpoint's weights once, reusing one module per architecture
    results.py   TidyTable: crash-safe, multi-writer tidy tables (one part file per unit of work)
    stats.py     seed aggregation (mean with 95 % t-interval, median with IQR) and bootstraps
    plots.py     metric-vs-step figures with seed bands (PNG and PDF)

Evaluations (held-out loss, lm-eval tasks, memorization) and the Parc paper's analysis (surprisal,
n-grams, behavioural phases) are built on these.
"""
