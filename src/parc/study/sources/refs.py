"""What a checkpoint reference is: CheckpointRef (where, which architecture / seed / shard / step), the loaded
form, and reading that identity from a Parc run config or from repository and revision names.

parc.study.sources.runs resolves `runs=` into these; parc.study.sources.hub and parc.study.sources.model_cache read them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from parc.config import RUN_CONFIG  # noqa: F401 (the name sources use)
from parc.errors import ParcError
from parc.store.checkpoint import STATE_DIR, TRAINER_STATE  # noqa: F401 (TRAINER_STATE: the Hub reader's path)

IDENTITY_COLUMNS = [
    "arch",
    "size",
    "seed",
    "shard",
    "data_seed",
    "intervention",
    "step",
    "tokens",
    "source",
    "revision",
    "commit",
]
HUB_PREFIX = "hub:"
NEOX_PREFIX = "neox:"  # a raw GPT-NeoX save dir (parc.study.sources.neox)
# What a name tells when no manifest does: searched in "<run or repo name>@<revision>", later ones win.
NAME_PATTERNS = [
    r"(?P<arch>pythia|mamba|rwkv)",
    r"pythia-(?P<size>\d+(?:\.\d+)?[mMbB])(?:-deduped)?\b",
    r"seed[-_]?(?P<seed>\d+)",
    r"shard[-_]?(?P<shard>\d+)",
    r"@(?:checkpoint-|step)(?P<step>\d+)$",
]


@dataclass(frozen=True)
class CheckpointRef:
    arch: str  # registry name (pythia | mamba | rwkv), or the HF model_type of a foreign model
    size: str  # arch.size of a Parc run ("full", "tiny", "160m", ...), parsed from a name, or ""
    seed: Optional[int]
    shard: Optional[int]
    data_seed: Optional[int]
    step: int  # optimizer updates done (checkpoint-N / stepN)
    tokens: Optional[int]
    source: str  # absolute local run directory, "hub:<repo_id>", or "neox:<absolute raw save dir>"
    revision: str  # "checkpoint-40" (local dir name or Hub branch), "step40", "main", "global_step40", ...
    commit: str  # Hub commit sha, or sources.weights_identity of the local manifest: what the weights are
    run: str  # stable label of the run, e.g. "pythia-seed0-shard0" or the repo id
    intervention: str = ""  # "<intervention>@<k>" for a branch or an intervened run (block_swap@1000), "" for none

    def key(self) -> str:
        """Identity of the weights, for incremental results (a re-trained checkpoint gets a new key)."""
        return f"{self.source}@{self.revision}#{self.commit}"

    def columns(self) -> Dict[str, Any]:
        values = asdict(self)
        return {name: values[name] for name in IDENTITY_COLUMNS}

    @property
    def is_hub(self) -> bool:
        return self.source.startswith(HUB_PREFIX)

    @property
    def is_neox(self) -> bool:
        return self.source.startswith(NEOX_PREFIX)

    @property
    def repo_id(self) -> str:
        return self.source[len(HUB_PREFIX) :]

    @property
    def local_dir(self) -> Path:
        """The checkpoint's directory (local and raw NeoX refs: its global_stepN directory)."""
        source = Path(self.source.removeprefix(NEOX_PREFIX))
        return source if (source / "config.json").is_file() and self.revision == source.name else source / self.revision


@dataclass
class LoadedCheckpoint:
    ref: CheckpointRef
    model: Any  # transformers causal LM, eval mode, fp32
    tokenizer: Any  # the checkpoint's own tokenizer
    directory: Path  # local directory holding the files (a download for Hub refs)
    max_length: int  # the context length of the architecture (lm-eval cannot read it for Mamba/RWKV)


# --- names and configs --------------------------------------------------------------------------------


def parse_name(text: str, pattern: Optional[str] = None) -> Dict[str, str]:
    """Named groups found in `text` by NAME_PATTERNS, then by the user's `pattern` (which wins)."""
    found: Dict[str, str] = {}
    for regex in NAME_PATTERNS + ([pattern] if pattern else []):
        try:
            match = re.search(regex, text, flags=re.IGNORECASE)
        except re.error as exc:
            raise ParcError(
                f"pattern={regex!r} is not a valid regular expression ({exc}): use named groups, "
                f"e.g. pattern='seed(?P<seed>\\d+)'"
            ) from None
        if match:
            found.update({k: v for k, v in match.groupdict().items() if v is not None})
    return found


def identity_from_config(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """arch, size, seed, shard, data_seed, intervention of a Parc run config (portable_config), or {} for None."""
    if not config:
        return {}
    arch, data = config.get("arch") or {}, config.get("data") or {}
    return {
        "arch": arch.get("name"),
        "size": arch.get("size"),
        "seed": config.get("seed"),
        "shard": data.get("shard"),
        "data_seed": data.get("data_seed"),
        "intervention": intervention_label(config),
    }


def intervention_label(config: Dict[str, Any]) -> str:
    """ "<name>@<k>" of a run whose data changed after step k (a bare branch: "branch@<k>"), "" for the base run:
    the column that keeps a branch apart from its parent (same arch and seed) in every table."""
    change = config.get("intervention") or {}
    name = change.get("name") or "none"
    if name == "none" and not config.get("branch_from"):
        return ""
    return f"{'branch' if name == 'none' else name}@{change.get('step')}"


def _int_or_none(value) -> Optional[int]:
    return None if value is None or value == "" else int(value)


def make_ref(
    identity: Dict[str, Any],
    named: Dict[str, str],
    model_type: Optional[str],
    step: Optional[int],
    tokens: Optional[int],
    source: str,
    revision: str,
    commit: str,
    run: str,
) -> CheckpointRef:
    """Manifest/config values first, then what the names say; the step must be known one way or another."""
    merged = {**named, **{k: v for k, v in identity.items() if v is not None}}
    step = step if step is not None else _int_or_none(named.get("step"))
    if step is None:
        raise ParcError(
            f"cannot tell the training step of {source}@{revision}: name its revisions checkpoint-N "
            f"or stepN, or pass pattern= with a (?P<step>...) group"
        )
    arch = merged.get("arch") or model_type
    if not arch:
        raise ParcError(
            f"cannot tell the architecture of {source}@{revision} (no Parc config, no config.json "
            f"model_type): pass pattern= with an (?P<arch>...) group"
        )
    return CheckpointRef(
        arch=str(arch).lower(),
        size=str(merged.get("size") or ""),
        seed=_int_or_none(merged.get("seed")),
        shard=_int_or_none(merged.get("shard")),
        data_seed=_int_or_none(merged.get("data_seed")),
        step=int(step),
        tokens=_int_or_none(tokens),
        source=source,
        revision=revision,
        commit=commit,
        run=run,
        intervention=str(merged.get("intervention") or ""),
    )


def describe_steps(steps: List[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 8 else f"{', '.join(map(str, steps[:6]))} ... {steps[-1]}"
