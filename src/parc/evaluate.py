"""`python -m parc.evaluate runs=... [steps=...] [eval=<preset>] [eval.key=value ...] [out=...]`: evaluate checkpoints
into one tidy table, `<out>/results.parquet` + `.csv`, with per-example results under `<out>/examples/`.

    python -m parc.evaluate runs=runs/parc                                   # held-out loss, every checkpoint
    python -m parc.evaluate runs=runs/parc steps=10,20,40,80,160,320,640,1280,2560,4000 eval=parc
    python -m parc.evaluate runs=hub:EleutherAI/pythia-160m steps=1000 eval.tasks=[sciq] eval.keep_downloads=false
    python -m parc.evaluate runs=runs/demo eval.tasks=[my_task] eval.include_path=tasks/ eval.batch_size=16

Own arguments: runs= (comma-separated run dirs, grid roots, HF model dirs, hub:<repo>[@<rev>]), steps= (comma-
separated; default every checkpoint), out= (default <root of the first run>/evals), pattern= (a regex with named
groups arch/size/seed/shard/step for names without manifests), part= / num_parts= (evaluate every num_parts-th
checkpoint starting at part: Slurm array tasks). Everything else is a Hydra override of parc/configs/evaluate.yaml
and its `eval/` group (parc.study.evaluations.settings lists the keys). Reruns evaluate only what is missing.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.config import split_own_args
    from parc.study import OWN_EVALUATE_ARGS, run_evaluate

    run_evaluate(*split_own_args(list(sys.argv[1:] if argv is None else argv), OWN_EVALUATE_ARGS))


if __name__ == "__main__":
    main()
