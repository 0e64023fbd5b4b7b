"""`python -m parc.evaluate runs=... [steps=...] [eval=<preset>] [eval.key=value ...] [out=...]`: evaluate checkpoints
into one tidy table, `<out>/results.parquet` + `.csv`, with per-example results under `<out>/examples/`.

    python -m parc.evaluate runs=runs/parc                                   # held-out loss, every checkpoint
    python -m parc.evaluate runs=runs/parc steps=10,20,40,80,160,320,640,1280,2560,4000 eval=parc
    python -m parc.evaluate runs=hub:EleutherAI/pythia-160m steps=1000 eval.tasks=[sciq] eval.keep_downloads=false
    python -m parc.evaluate runs=runs/demo eval.tasks=[my_task] eval.include_path=tasks/ eval.batch_size=16

Own arguments: runs= (comma-separated run dirs, grid roots, HF model dirs, hub:<repo>[@<rev>]), steps= (comma-
separated; default every checkpoint), out= (default <root of the first run>/evals), pattern= (a regex with named
groups arch/size/seed/shard/step for names without manifests), part= / num_parts= (evaluate every num_parts-th
checkpoint starting at part: Slurm array tasks). Everything else is a Hydra override of configs/evaluate.yaml
and its `eval/` group (parc.study.evalconfig lists the keys). Reruns evaluate only what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError, exit_on_error

OWN_ARGS = ("runs", "steps", "out", "pattern", "part", "num_parts")


def parse_steps(text: Optional[str]) -> Optional[List[int]]:
    from parc.config import own_ints

    if text is None or text.strip() in ("", "all", "null"):
        return None
    return own_ints("steps", text, example="10,20,40")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.config import compose, own_int, split_own_args
    from parc.study.evalconfig import evaluation_names, register_evaluate_schema, validate_eval

    own, overrides = split_own_args(list(sys.argv[1:] if argv is None else argv), OWN_ARGS)
    if "runs" not in own:
        raise ParcError("runs= is required: pass run directories, grid roots or hub:<repo>[@<revision>], e.g. "
                        "python -m parc.evaluate runs=runs/demo")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ParcError(f"{bad[0]!r} is not an argument: write key=value, e.g. eval=parc or eval.batch_size=16")
    part, num_parts = own_int("part", own.get("part", "0")), own_int("num_parts", own.get("num_parts", "1"))
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ParcError(f"part={part} num_parts={num_parts}: need 0 <= part < num_parts")
    register_evaluate_schema()
    cfg = compose(overrides, config_name="evaluate")
    validate_eval(cfg.eval)

    from parc.study.evaluations import build_evaluations
    from parc.study.runner import check_writable, run_evaluations
    from parc.study.sources import ModelCache, default_out, resolve_runs

    refs = resolve_runs(own["runs"], parse_steps(own.get("steps")), own.get("pattern"))
    out = Path(own["out"]) if own.get("out") else default_out(own["runs"], "evals")
    check_writable(out)
    evaluations = build_evaluations(evaluation_names(cfg.eval), cfg.eval, refs)  # bad input is refused here
    cache = ModelCache(keep_downloads=cfg.eval.keep_downloads,
                       cache_dir=Path(cfg.eval.cache_dir) if cfg.eval.cache_dir else None,
                       fast_path=cfg.eval.fast_path)
    try:
        summary = run_evaluations(refs, evaluations, out, cache, part=part, num_parts=num_parts,
                                  progress=cfg.progress)
    finally:
        for evaluation in evaluations:
            evaluation.close()
    print(f"parc.evaluate: {summary.evaluated} evaluated, {summary.skipped} already done, "
          f"{summary.checkpoints} checkpoints loaded in {summary.seconds:.1f} s -> {summary.table}", flush=True)


if __name__ == "__main__":
    main()
