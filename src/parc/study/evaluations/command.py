"""parc.evaluate's job: `runs=` + an eval config -> the evaluated checkpoints' rows in one tidy table.

`run_evaluate(own, overrides)` checks this command's own arguments (runs, steps, out, pattern, part /
num_parts), composes parc/configs/evaluate.yaml with the overrides, resolves the checkpoints, builds the
evaluations (bad input is refused before anything loads) and runs them through parc.study.evaluations.loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from parc.config import compose, own_int, own_ints
from parc.errors import ParcError
from parc.study.evaluations.settings import evaluation_names, register_evaluate_schema, validate_eval
from parc.study.evaluations import build_evaluations
from parc.study.sources.model_cache import ModelCache
from parc.study.evaluations.loop import check_writable, run_evaluations
from parc.study.sources.runs import default_out, resolve_runs

OWN_EVALUATE_ARGS = ("runs", "steps", "out", "pattern", "part", "num_parts")


def parse_steps(text: Optional[str]) -> Optional[List[int]]:
    if text is None or text.strip() in ("", "all", "null"):
        return None
    return own_ints("steps", text, example="10,20,40")


def run_evaluate(own: Dict[str, str], overrides: List[str]) -> None:
    if "runs" not in own:
        raise ParcError("runs= is required: pass run directories, grid roots or hub:<org/name>[@<revision>], e.g. "
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
