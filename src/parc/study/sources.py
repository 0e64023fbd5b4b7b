"""Which checkpoints a study reads, and loading them: `runs=` / `steps=` -> CheckpointRef -> a loaded model.

`runs=` is a comma-separated list of local run directories (an `output_dir` holding `checkpoint-N/`), grid
roots (directories holding such runs), `hub:<repo>` (every revision of a Hub repo) and `hub:<repo>@<rev>`.
Architecture, seed, shard and step come from Parc's manifests where present, else from repository and
revision names (a configurable pattern), else the user is asked for them.

CONTRACT (shared by parc.evaluate and the surprisal/n-gram analysis; implemented by issue 8):

    refs = resolve_runs("runs/parc,hub:org/repo@checkpoint-40", steps=[10, 20])   # List[CheckpointRef]
    cache = ModelCache(keep_downloads=True)
    with cache.open(ref) as loaded:        # weights read once; one module per architecture reused
        loaded.model, loaded.tokenizer, loaded.directory, loaded.max_length
    run_config(ref)                        # the run's training config (dict) when Parc wrote it, else None
    default_out(runs, "evals")             # <root of the first run>/evals
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

IDENTITY_COLUMNS = ["arch", "size", "seed", "shard", "data_seed", "step", "tokens", "source", "revision", "commit"]


@dataclass(frozen=True)
class CheckpointRef:
    arch: str                 # registry name (pythia | mamba | rwkv), or the HF model_type of a foreign model
    size: str                 # arch.size of a Parc run ("full", "tiny", "160m", ...), parsed from a name, or ""
    seed: Optional[int]
    shard: Optional[int]
    data_seed: Optional[int]
    step: int                 # optimizer updates done (checkpoint-N / stepN)
    tokens: Optional[int]
    source: str               # absolute local run directory, or "hub:<repo_id>"
    revision: str             # "checkpoint-40" (local dir name or Hub branch), "step40", "main", ...
    commit: str               # Hub commit sha, or sha256 of the local completion manifest: what the weights are
    run: str                  # stable label of the run, e.g. "pythia-seed0-shard0" or the repo id

    def key(self) -> str:
        """Identity of the weights, for incremental results (a re-trained checkpoint gets a new key)."""
        return f"{self.source}@{self.revision}#{self.commit}"

    def columns(self) -> Dict[str, Any]:
        values = asdict(self)
        return {name: values[name] for name in IDENTITY_COLUMNS}


@dataclass
class LoadedCheckpoint:
    ref: CheckpointRef
    model: Any                # transformers causal LM, eval mode, fp32
    tokenizer: Any            # the checkpoint's own tokenizer
    directory: Path           # local directory holding the files (a download for Hub refs)
    max_length: int           # the context length of the architecture (lm-eval cannot read it for Mamba/RWKV)


def resolve_runs(runs: Union[str, Sequence[str]], steps: Optional[Sequence[int]] = None,
                 pattern: Optional[str] = None) -> List[CheckpointRef]:
    """Every checkpoint named by `runs`, restricted to `steps` when given, sorted by (run, step).

    Raises ParcError (one line) for a path that holds no run, a run with no complete checkpoint, a requested
    step a run does not have, or a Hub repo/revision that does not exist.
    """
    raise NotImplementedError("issue 8: parc.study.sources.resolve_runs")


def run_config(ref: CheckpointRef) -> Optional[Dict[str, Any]]:
    """The training config Parc stored with the run (trainer_state / manifest), or None for foreign models."""
    raise NotImplementedError("issue 8: parc.study.sources.run_config")


def default_out(runs: Union[str, Sequence[str]], leaf: str) -> Path:
    """`<root of the first run>/<leaf>`: the grid root for a grid, the run's parent for a run dir."""
    raise NotImplementedError("issue 8: parc.study.sources.default_out")


class ModelCache:
    """Loads checkpoints for the study layer, reusing one model module per architecture (load_state_dict)."""

    def __init__(self, keep_downloads: bool = True, cache_dir: Optional[Path] = None):
        self.keep_downloads = keep_downloads
        self.cache_dir = cache_dir

    def open(self, ref: CheckpointRef):
        """Context manager yielding a LoadedCheckpoint; a Hub download is dropped on exit unless kept."""
        raise NotImplementedError("issue 8: parc.study.sources.ModelCache.open")
