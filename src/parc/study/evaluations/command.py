"""parc.evaluate's job: `runs=` + an eval config -> the evaluated checkpoints' rows in one tidy table.

`run_evaluate(runs, overrides, steps, out, pattern, part, num_parts)` checks the arguments, composes
parc/configs/evaluate.yaml with the overrides, resolves the checkpoints, builds the evaluations (bad input is
refused before anything loads) and runs them through parc.study.evaluations.loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.config import compose
from parc.errors import ParcError
from parc.study.evaluations import build_evaluations
from parc.study.evaluations.loop import check_writable, run_evaluations
from parc.study.evaluations.settings import evaluation_names, register_evaluate_schema, validate_eval
from parc.study.sources.model_cache import ModelCache
from parc.study.sources.runs import default_out, resolve_runs


def run_evaluate(
    runs: str,
    overrides: List[str],
    steps: Optional[List[int]] = None,
    out: Optional[Path] = None,
    pattern: Optional[str] = None,
    part: int = 0,
    num_parts: int = 1,
) -> None:
    """Evaluate the checkpoints of `runs` (run dirs, grid roots, HF model dirs, hub:<repo>[@<rev>]; comma-separated)
    at `steps` (None: every one) into `<out>/results.parquet`; `overrides` are of parc/configs/evaluate.yaml."""
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ParcError(f"part={part} num_parts={num_parts}: need 0 <= part < num_parts")
    register_evaluate_schema()
    cfg = compose(overrides, config_name="evaluate")
    validate_eval(cfg.eval)

    refs = resolve_runs(runs, steps, pattern)
    out = Path(out) if out is not None else default_out(runs, "evals")
    check_writable(out)
    evaluations = build_evaluations(evaluation_names(cfg.eval), cfg.eval, refs)  # bad input is refused here
    cache = ModelCache(
        keep_downloads=cfg.eval.keep_downloads,
        cache_dir=Path(cfg.eval.cache_dir) if cfg.eval.cache_dir else None,
        fast_path=cfg.eval.fast_path,
    )
    try:
        summary = run_evaluations(refs, evaluations, out, cache, part=part, num_parts=num_parts, progress=cfg.progress)
    finally:
        for evaluation in evaluations:
            evaluation.close()
    print(
        f"parc.evaluate: {summary.evaluated} evaluated, {summary.skipped} already done, "
        f"{summary.checkpoints} checkpoints loaded in {summary.seconds:.1f} s -> {summary.table}",
        flush=True,
    )
