"""Checkpoint evaluations (`python -m parc.evaluate`): this module is their registry and protocol; beside it the
built-in evaluations (heldout.py, lmeval.py, memorization.py), their settings (settings.py, the eval/ config
group), the loop over checkpoints (loop.py), the command's typed entry (command.py), greedy decoding for
memorization (greedy.py) and its panel mode (panel.py), A/B comparisons with the multi-bootstrap (compare.py,
parc.compare) and the figures of results and of training curves (figures.py, learning_curves.py: parc.plot). May import the study root and
sources/; not phases/ or dynamics/.

Each evaluation is a small module, found by its name in `eval.evaluations`.

    @register("memorization")
    class Memorization(Evaluation):
        def __init__(self, eval_cfg, refs):     # setup shared by every checkpoint; ParcError for bad input,
            super().__init__(eval_cfg, refs)    # raised here, before anything runs or is written
        def tasks(self) -> list[str]: ...       # the task names its rows will carry (for the plan and summaries)
        def fingerprint(self) -> dict: ...      # every setting its numbers depend on (hashed into the unit key)
        def run(self, loaded) -> EvalResult: ...  # one checkpoint (parc.study.sources.runs.LoadedCheckpoint)

`EvalResult.rows` are dicts with at least `task, metric, value, stderr, n` (more columns may follow, e.g.
`task_version`); the runner (parc.study.evaluations.loop) adds the checkpoint's identity (CheckpointRef.columns()),
`evaluation`, and provenance (`parc_version`, and `provenance()`'s values such as `lm_eval_version`), and
stores them as one part of the results table `<out>/results.parquet` under `unit_key(ref, evaluation)`:
`ref.key()` (source, revision and commit/manifest hash) + evaluation name + hash of `fingerprint()`. A rerun
skips units whose part exists; a changed setting or re-trained checkpoint gets a new key. `EvalResult.examples`
(optional DataFrame: `example_id`, `task`, then per-example values) is stored the same way, under the same key
and with the same identity columns, in `<out>/examples/<evaluation>.parquet`; it is written before the result
rows, so a unit is only ever done with its examples on disk.

Run order: all evaluations of one checkpoint run while its weights are loaded (read once). `run` must not
depend on which checkpoints came before (the module is reused across checkpoints of one architecture, the
weights replaced in place) and must be deterministic on CPU.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Sequence

from parc.errors import ParcError

# Modules holding the built-in evaluations; importing them defines their classes.
BUILTIN_MODULES = (
    "parc.study.evaluations.heldout",
    "parc.study.evaluations.lmeval",
    "parc.study.evaluations.memorization",
)
ROW_KEYS = ("task", "metric", "value", "stderr", "n")


@dataclass
class EvalResult:
    rows: List[Dict[str, Any]]
    examples: Optional[Any] = None  # pandas.DataFrame with example_id, task, ...
    summary: str = ""  # a few words for the one-line summary of the checkpoint (default: the first rows)


@dataclass
class Evaluation:
    """Base class: holds the `eval` config node and the refs every evaluation of this invocation covers."""

    eval_cfg: Any
    refs: Sequence[Any] = field(default_factory=list)
    name: ClassVar[str] = ""

    def tasks(self) -> List[str]:
        return [self.name]

    def fingerprint(self) -> Dict[str, Any]:
        """Settings the numbers depend on (not batch sizes or paths that do not change them)."""
        return {}

    def provenance(self) -> Dict[str, Any]:
        """Columns stamped on every row (e.g. library versions); a row's own value wins."""
        return {}

    def run(self, loaded) -> EvalResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release what __init__ set up (called once, after the last checkpoint)."""


def register(name: str):
    """Class decorator: make an Evaluation subclass available as `eval.evaluations=[<name>]`."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Evaluation)):
            raise TypeError(f"@register({name!r}) decorates Evaluation subclasses, not {cls!r}")
        cls.name = name
        return cls

    return decorate


def _subclasses(cls) -> List[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def registry() -> Dict[str, type]:
    """name -> Evaluation class, over the built-in modules (and any other module already imported)."""
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # an evaluation not part of this install; its own imports must work
            if exc.name != module:
                raise
    return {cls.name: cls for cls in _subclasses(Evaluation) if cls.name}


def build_evaluations(names: Sequence[str], eval_cfg, refs) -> List[Evaluation]:
    known = registry()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ParcError(f"unknown evaluation {unknown[0]!r}: choose eval.evaluations= among {', '.join(sorted(known))}")
    return [known[name](eval_cfg, refs) for name in names]


def fingerprint_hash(evaluation: Evaluation) -> str:
    text = json.dumps(evaluation.fingerprint(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def unit_key(ref, evaluation: Evaluation) -> str:
    """The results-table key of one checkpoint x one evaluation with its settings."""
    return f"{ref.key()}|{evaluation.name}|{fingerprint_hash(evaluation)}"
