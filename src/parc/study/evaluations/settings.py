"""The typed schema of `python -m parc.evaluate` (parc/configs/evaluate.yaml and the `eval/` group), and its checks.

`runs=`, `steps=`, `out=`, `pattern=`, `part=`, `num_parts=` are read by the entry point itself (their values
hold commas, which Hydra would take for a sweep); everything under `eval.` is composed by Hydra from a preset in
parc/configs/eval/ (`default` = held-out loss, `parc` = the Parc paper's lm-eval tasks, `memorization`, its panel
mode `panel` and `canaries`) and overrides such as `eval.tasks=[blimp,sciq] eval.batch_size=16`. An unknown key is refused while composing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from parc.errors import ParcError


@dataclass
class HeldoutConfig:
    data_dir: Optional[str] = None  # a prepared stream; None: the runs' own (found beside the runs)
    sequences: int = 256  # how many packed sequences (the same ones for every run)
    start: Optional[int] = None  # first stream index; None: right after the highest training shard in use


@dataclass
class PanelConfig:
    """eval=memorization's panel mode (parc.study.evaluations.panel; presets eval=panel and eval=canaries)."""

    enabled: bool = False
    per_interval: int = 10  # training sequences per checkpoint interval (c_{i-1}, c_i] of each run
    controls: int = 200  # never-trained stream rows after every evaluated run's training data
    seed: int = 0  # the sample of both
    exposure: bool = False  # canaries' secret NLL and exposure among the never-inserted references


@dataclass
class EvalConfig:
    name: str = "default"  # the preset
    evaluations: List[str] = field(default_factory=lambda: ["heldout"])  # registry names; lm_eval joins when tasks=
    tasks: List[str] = field(default_factory=list)  # lm-eval task (or group) names
    include_path: Optional[str] = None  # a directory of local lm-eval task YAMLs
    num_fewshot: int = 0
    limit: Optional[int] = None  # at most this many examples per task (quick looks; recorded in the key)
    bootstrap_iters: int = 1000  # lm-eval's bootstrap for the stderr of non-mean metrics (perplexities)
    batch_size: int = 8  # sequences per forward; an integer: `auto` probes at the maximum and never backs off on CPU
    keep_downloads: bool = True  # false: each Hub revision is deleted once evaluated
    cache_dir: Optional[str] = None  # where Hub revisions are downloaded (default: the HF cache, or a temp dir)
    fast_path: str = "auto"  # Parc's fast forward for Pythia/Mamba/RWKV (same function); reference = transformers'
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)
    # memorization (parc.study.evaluations.memorization): Pythia's protocol
    sample: Optional[int] = None  # how many training sequences (a fixed sample shared by every run); None = all
    prompt_len: int = 32
    continuation_len: int = 32
    panel: PanelConfig = field(default_factory=PanelConfig)


@dataclass
class EvaluateConfig:
    eval: EvalConfig = field(default_factory=EvalConfig)
    progress: bool = True


def register_evaluate_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def evaluation_names(eval_cfg) -> List[str]:
    """The evaluations to run: the preset's, plus lm_eval whenever tasks are named."""
    names = list(eval_cfg.evaluations)
    if eval_cfg.tasks and "lm_eval" not in names:
        names.append("lm_eval")
    return names


def validate_eval(eval_cfg) -> None:
    for key in ("batch_size", "heldout.sequences", "prompt_len", "continuation_len", "bootstrap_iters"):
        node = eval_cfg
        for part in key.split("."):
            node = node[part]
        if node <= 0:
            raise ParcError(f"eval.{key}={node} must be a positive integer")
    for key in ("limit", "sample"):
        if eval_cfg[key] is not None and eval_cfg[key] <= 0:
            raise ParcError(f"eval.{key}={eval_cfg[key]} must be a positive integer (or null)")
    for key in ("per_interval", "controls", "seed"):
        if eval_cfg.panel[key] < 0:
            raise ParcError(f"eval.panel.{key}={eval_cfg.panel[key]} must not be negative")
    if eval_cfg.num_fewshot < 0:
        raise ParcError(f"eval.num_fewshot={eval_cfg.num_fewshot} must not be negative")
    if "lm_eval" in eval_cfg.evaluations and not eval_cfg.tasks:
        raise ParcError("eval.evaluations has lm_eval but eval.tasks is empty: name tasks, e.g. eval.tasks=[sciq]")
