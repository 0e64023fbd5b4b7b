"""Where the study layer's checkpoints come from: `runs=` / `steps=` resolved to CheckpointRefs (runs.py: local
run directories, grid roots, HF model dirs; hub.py: Hub revisions, through parc.hub's one reader; neox.py: raw
GPT-NeoX checkpoints, weights only), their identity and provenance (refs.py), and the weights loaded once per checkpoint, reusing one module per
architecture (model_cache.py). Imports the study root (results, stats, plots) and the packages below the study
layer; never evaluations/, phases/ or dynamics/, which read checkpoints through it.
"""
