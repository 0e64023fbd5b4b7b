"""`python -m parc.dynamics <noise|similarity|diffs|outliers> key=value ...`: training dynamics across seeds and
architectures, from the files a grid and parc.evaluate wrote.

    python -m parc.dynamics noise evals=runs/demo/evals                 # seed / checkpoint / item variance, MDE
    python -m parc.dynamics similarity runs=runs/demo steps=0,8 pairs=seeds,archs sequences=32
    python -m parc.dynamics similarity runs=hub:EleutherAI/pythia-160m@step1000,hub:EleutherAI/pythia-160m@step143000 \
        pairs=steps eval.heldout.data_dir=data/pile-neox                 # any HF causal LM, with its tokenizer's stream
    python -m parc.dynamics diffs runs=hub:EleutherAI/pythia-160m       # per-layer weight change, broken revisions
    python -m parc.dynamics diffs runs=neox:neox-ckpt-pythia-160m       # raw GPT-NeoX tags (every global_stepN)
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

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, REQUIRED, STRS, Command, Key
from parc.errors import exit_on_error

OUT = Key("out", Path, None, "where tables and figures go")
RUNS = Key("runs", str, REQUIRED, "run dirs, grid roots, hub:<org/name>[@<revision>] or neox:<dir>, comma-separated")
TOLERANCE = Key("tolerance", float, None, "relative change below which revisions count as equal")
K = Key("k", float, 6.0, "robust SDs from the seeds' median that flag a curve")
COMMAND = Command(
    "parc.dynamics",
    __doc__,
    example="python -m parc.dynamics noise evals=runs/demo/evals",
    subcommands=(
        Command("noise", keys=(Key("evals", Path, REQUIRED, "the out= directory of parc.evaluate"), OUT)),
        Command(
            "similarity",
            overrides=True,
            keys=(
                RUNS,
                Key("steps", INTS, None, "checkpoints (default all)"),
                Key("pattern", str, None, "as parc.evaluate's"),
                Key("pairs", STRS, ["steps", "seeds", "archs"], "which pairs to compare", ("steps", "seeds", "archs")),
                Key("layers", str, "diagonal", "layer i with layer i, or every pair", ("diagonal", "all")),
                Key("sequences", int, 32, "held-out sequences"),
                Key("max_tokens", int, 4096, "tokens per sequence"),
                OUT,
            ),
        ),
        Command(
            "diffs", keys=(RUNS, Key("branch", str, None, "branch template of the repo's revisions"), TOLERANCE, OUT)
        ),
        Command("outliers", keys=(RUNS, Key("evals", Path, None, "parc.evaluate's out= directory"), K, OUT)),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import run_diffs, run_noise, run_outliers, run_similarity

    run = {"noise": run_noise, "similarity": run_similarity, "diffs": run_diffs, "outliers": run_outliers}
    overrides = {"overrides": args.overrides} if args.subcommand == "similarity" else {}
    run[args.subcommand](**args.values, **overrides)  # each key is the parameter of that name, typed by its Key


if __name__ == "__main__":
    main()
