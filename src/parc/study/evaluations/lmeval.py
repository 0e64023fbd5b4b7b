"""lm-eval tasks through lm_eval's Python API, on the model already loaded (extra `eval`: lm_eval>=0.4.11).

The loaded module is wrapped once in `HFLM` (one wrapper per module: the weights of later checkpoints are
copied into the same module, and lm-eval picks them up), with the checkpoint's tokenizer passed explicitly,
`max_length` from the architecture (lm-eval reads only GPT-style position limits and falls back to 2048 for
Mamba and RWKV) and an integer batch size (`auto` probes at the maximum batch and never backs off on CPU).
Tasks are indexed once per invocation; local task YAMLs come from `eval.include_path` (the built-in index of
~15k tasks is only built when a task is not found there). Every example's result is kept (`log_samples`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List

from parc.errors import ParcError
from parc.study.evaluations import EvalResult, Evaluation, register

EXTRA = "pip install 'parc[eval]'"
MIN_VERSION = (0, 4, 11)


def import_lm_eval():
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM  # noqa: F401  (fails early if transformers support is broken)
        from lm_eval.tasks import TaskManager  # noqa: F401
    except ImportError:
        raise ParcError(
            f"lm-eval tasks need the optional extra `eval` (lm_eval>={'.'.join(map(str, MIN_VERSION))}): {EXTRA}"
        ) from None
    from importlib.metadata import version

    installed = version("lm_eval")
    if tuple(int(p) for p in installed.split(".")[:3] if p.isdigit()) < MIN_VERSION:
        raise ParcError(f"lm_eval {installed} is too old for transformers 5: {EXTRA} (lm_eval>=0.4.11)")
    return lm_eval, installed


def task_manager(tasks: List[str], include_path):
    """A TaskManager that knows every task asked for: the local index alone when it has them all."""
    from lm_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).is_dir():
        raise ParcError(f"eval.include_path={include_path} is not a directory of lm-eval task YAMLs")
    if include_path is not None:
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or in {include_path}" if include_path else " (local YAMLs: eval.include_path=<dir>)"
        raise ParcError(
            f"unknown lm-eval task {unknown[0]!r}: not among lm_eval's {len(manager.all_tasks)} tasks"
            f"{where}; list them with `lm_eval ls tasks`"
        )
    return manager


LOCAL_TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
test_split: test
output_type: {output_type}
{body}
metadata:
  version: {version}
"""


def write_local_task(
    directory: Path, name: str, output_type: str, records: List[dict], body: str, version: str = "1.0"
) -> Path:
    """A local lm-eval task for `eval.include_path=<directory>`: `<name>.jsonl` (the documents) and
    `<name>.yaml` (`body` holds the doc_to_* and metric_list lines of the task config)."""
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    path = directory / f"{name}.yaml"
    path.write_text(LOCAL_TASK_YAML.format(name=name, data=data, output_type=output_type, body=body, version=version))
    return path


def stderr_value(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def result_rows(output: Dict[str, Any]) -> List[Dict[str, Any]]:
    """lm-eval's results dict -> tidy rows: one per task (or group) x metric (x filter when not 'none')."""
    rows = []
    counts = output.get("n-samples", {})
    for task, metrics in sorted(output["results"].items()):
        for key, value in sorted(metrics.items()):
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filter_name = key.split(",", 1)
            rows.append(
                {
                    "task": task,
                    "metric": metric if filter_name == "none" else f"{metric},{filter_name}",
                    "value": float(value),
                    "stderr": stderr_value(metrics.get(f"{metric}_stderr,{filter_name}")),
                    "n": int(counts.get(task, {}).get("effective", metrics.get("sample_len", 0)) or 0),
                    "task_version": str(output.get("versions", {}).get(task, "")),
                }
            )
    return rows


def example_rows(output: Dict[str, Any]):
    """Per-example metrics: a value, or for perplexity-like metrics its (log-likelihood, weight) pair."""
    import pandas as pd

    records = []
    for task, samples in sorted(output.get("samples", {}).items()):
        for sample in samples:
            record = {
                "example_id": int(sample["doc_id"]),
                "task": task,
                "doc_hash": sample.get("doc_hash", ""),
                "filter": sample.get("filter", "none"),
            }
            for metric in sample.get("metrics", []):
                value = sample.get(metric)
                if isinstance(value, (tuple, list)) and len(value) == 2:
                    record[metric], record[f"{metric}_weight"] = float(value[0]), float(value[1])
                elif isinstance(value, (bool, int, float)):
                    record[metric] = float(value)
            records.append(record)
    return pd.DataFrame(records) if records else None


@register("lm_eval")
class LmEvalTasks(Evaluation):
    def __init__(self, eval_cfg, refs):
        super().__init__(eval_cfg, refs)
        self.lm_eval, self.version = import_lm_eval()
        self.task_names = list(eval_cfg.tasks)
        if not self.task_names:
            raise ParcError("no lm-eval tasks named: pass eval.tasks=[...] (or eval=parc)")
        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-task config notes, once per checkpoint
        self.manager = task_manager(self.task_names, eval_cfg.include_path)
        self.wrappers: Dict[int, Any] = {}  # id(module) -> its HFLM

    def tasks(self) -> List[str]:
        return self.task_names

    def fingerprint(self) -> dict:
        cfg = self.eval_cfg
        return {
            "tasks": self.task_names,
            "num_fewshot": int(cfg.num_fewshot),
            "limit": cfg.limit,
            "bootstrap_iters": int(cfg.bootstrap_iters),
            "lm_eval": self.version,
            "include_path": str(Path(cfg.include_path).resolve()) if cfg.include_path else None,
        }

    def provenance(self) -> dict:
        return {"lm_eval_version": self.version}

    def wrapper(self, loaded):
        from lm_eval.models.huggingface import HFLM

        key = id(loaded.model)
        held = self.wrappers.get(key)
        if held is None or held.tokenizer is not loaded.tokenizer or held.max_length != loaded.max_length:
            held = HFLM(
                pretrained=loaded.model,
                tokenizer=loaded.tokenizer,
                max_length=loaded.max_length,
                batch_size=int(self.eval_cfg.batch_size),
                device=str(loaded.model.device),
            )
            self.wrappers[key] = held
        return held

    def run(self, loaded) -> EvalResult:
        from lm_eval import simple_evaluate

        cfg = self.eval_cfg
        output = simple_evaluate(
            model=self.wrapper(loaded),
            tasks=self.task_names,
            task_manager=self.manager,
            num_fewshot=int(cfg.num_fewshot),
            limit=cfg.limit,
            log_samples=True,
            bootstrap_iters=int(cfg.bootstrap_iters),
        )
        rows = result_rows(output)
        shown = ", ".join(f"{r['task']} {r['metric']} {r['value']:.4g}" for r in rows[:4] if not math.isnan(r["value"]))
        shown += f" (+{len(rows) - 4} more)" if len(rows) > 4 else ""
        return EvalResult(rows, example_rows(output), summary=f"lm_eval: {shown}")

    def close(self) -> None:
        self.wrappers.clear()
