"""`python -m parc.dynamics <noise|similarity|diffs|outliers> key=value ...`: training dynamics across seeds and
architectures, from the files a grid and parc.evaluate wrote.

    python -m parc.dynamics noise evals=runs/demo/evals                 # seed / checkpoint / item variance, MDE
    python -m parc.dynamics similarity runs=runs/demo steps=0,8 pairs=seeds,archs sequences=32
    python -m parc.dynamics similarity runs=hub:EleutherAI/pythia-160m@step1000,hub:EleutherAI/pythia-160m@step143000 \
        pairs=steps eval.heldout.data_dir=data/pile-neox                 # any HF causal LM, with its tokenizer's stream
    python -m parc.dynamics diffs runs=hub:EleutherAI/pythia-160m       # per-layer weight change, broken revisions
    python -m parc.dynamics outliers runs=runs/parc evals=runs/parc/evals k=6

noise: `noise.parquet` (per arch, evaluation, task, metric, step: var_seed [var_shard, var_data_seed, var_run],
var_checkpoint, var_item, var_interaction, mde) and `noise-pairs.parquet` (MDE of every architecture pair), in
evals= unless out=. similarity: `similarity.parquet` (a, b, layer_a, layer_b, metric = cka | effective_rank,
value, ...); held-out sequences as parc.evaluate chooses them (eval.heldout.*). diffs: `diffs.parquet` (per
revision and layer group: rel_prev, rel_init) and `diffs-revisions.parquet` (flags: identical to the previous
revision, equal to the final one, non-monotone). outliers: `outliers.parquet`, one row per run and curve.
Figures (PNG + PDF) beside each table; default out= <root of the first run>/dynamics. See parc.study.dynamics.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.study import run_dynamics

    run_dynamics(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
