"""Training dynamics across seeds and architectures (`python -m parc.dynamics`), from what the grid and
parc.evaluate wrote:

    noise.py          seed noise at every checkpoint: variance split into seed / shard / data order,
                      checkpoint jitter and test items; minimum detectable effect at 80 % power
    cka.py            debiased linear CKA (unbiased HSIC, in feature space) and effective rank
    similarity.py     hidden states of checkpoints on fixed held-out sequences; which pairs to compare
    outlier_table.py  the seed outlier alarm (parc.training.outliers) on loss and evaluated metrics
    figures.py        their figures, through parc.study.plots
    command.py        the subcommands, with typed arguments: checks, tables, figures, summaries

Checkpoint weight diffs live in parc.hub.weightdiff (so parc.revisions audit=true diffs=true can use them).
Part of the study layer: may import every other package; nothing but the faces imports it.
"""

from parc import lazy_exports

PUBLIC = {
    "run_noise": "command",
    "run_similarity": "command",
    "run_diffs": "command",
    "run_outliers": "command",
    "linear_cka": "cka",
    "effective_rank": "cka",
    "noise_table": "noise",
    "similarity_table": "similarity",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
