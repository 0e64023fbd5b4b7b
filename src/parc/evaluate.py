"""`python -m parc.evaluate runs=... [steps=...] [eval=<preset>] [eval.key=value ...] [out=...]`: evaluate checkpoints
into one tidy table, `<out>/results.parquet` + `.csv`, with per-example results under `<out>/examples/`.

    python -m parc.evaluate runs=runs/parc                                   # held-out loss, every checkpoint
    python -m parc.evaluate runs=runs/parc steps=10,20,40,80,160,320,640,1280,2560,4000 eval=parc
    python -m parc.evaluate runs=hub:EleutherAI/pythia-160m steps=1000 eval.tasks=[sciq] eval.keep_downloads=false
    python -m parc.evaluate runs=runs/demo eval.tasks=[my_task] eval.include_path=tasks/ eval.batch_size=16

Own arguments: runs= (comma-separated run dirs, grid roots, HF model dirs, hub:<repo>[@<rev>], neox:<raw GPT-NeoX
global_stepN dir or save dir>: weights only, with a tokenizer.json in the tag or save dir), steps= (comma-
separated, ranges allowed; default every checkpoint), out= (default <root of the first run>/evals), pattern= (a
regex with named groups arch/size/seed/shard/step for names without manifests), part= / num_parts= (evaluate every
num_parts-th checkpoint starting at part: Slurm array tasks). Everything else is a Hydra override of
parc/configs/evaluate.yaml and its `eval/` group (parc.study.evaluations.settings lists the keys). Reruns evaluate only
what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, REQUIRED, Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.evaluate",
    __doc__,
    overrides=True,
    example="python -m parc.evaluate runs=runs/demo",
    keys=(
        Key("runs", str, REQUIRED, "run dirs, grid roots, HF model dirs, hub:<org/name>[@<revision>] or neox:<dir>"),
        Key("steps", INTS, None, "checkpoints to evaluate (default all)", example="10,20,40"),
        Key("out", Path, None, "the table's directory (default <root of the first run>/evals)"),
        Key("pattern", str, None, "regex with named groups arch/size/seed/shard/step, for names without manifests"),
        Key("part", int, 0, "this task's share of the checkpoints (Slurm arrays)"),
        Key("num_parts", int, 1, "how many shares"),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import run_evaluate

    run_evaluate(args.runs, args.overrides, args.steps, args.out, args.pattern, args.part, args.num_parts)


if __name__ == "__main__":
    main()
