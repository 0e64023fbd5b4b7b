"""Which checkpoints a study reads, and loading them: `runs=` / `steps=` -> CheckpointRef -> a loaded model.

`runs=` is a comma-separated list of local run directories (an `output_dir` holding `checkpoint-N/`), grid
roots (directories holding such runs), a single local checkpoint directory (any HF causal LM), `hub:<repo>`
(every `checkpoint-N` / `stepN` revision of a Hub repo) and `hub:<repo>@<rev>`.
Architecture, seed, shard and step come from Parc's manifests and run config where present, else from
repository and revision names (`NAME_PATTERNS`, or the user's `pattern=` regex with named groups), else a
one-line error asks for them.

CONTRACT (shared by parc.evaluate and the surprisal/n-gram analysis):

    refs = resolve_runs("runs/parc,hub:org/repo@checkpoint-40", steps=[10, 20])   # List[CheckpointRef]
    cache = ModelCache(keep_downloads=True)
    with cache.open(ref) as loaded:        # weights read once; one module per architecture reused
        loaded.model, loaded.tokenizer, loaded.directory, loaded.max_length
    run_config(ref)                        # the run's training config (dict) when Parc wrote it, else None
    default_out(runs, "evals")             # <root of the first run>/evals
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from parc.checkpoint import MANIFEST, STATE_DIR, complete_checkpoints, step_of
from parc.errors import ParcError
from parc.fileio import sha256_file

IDENTITY_COLUMNS = ["arch", "size", "seed", "shard", "data_seed", "step", "tokens", "source", "revision", "commit"]
HUB_PREFIX = "hub:"
RUN_CONFIG = "config.yaml"  # written by parc.train into every output_dir (parc.config.portable_config)
TRAINER_STATE = f"{STATE_DIR}/trainer_state.json"
# What a name tells when no manifest does: searched in "<run or repo name>@<revision>", later ones win.
NAME_PATTERNS = [r"(?P<arch>pythia|mamba|rwkv)", r"pythia-(?P<size>\d+(?:\.\d+)?[mMbB])(?:-deduped)?\b",
                 r"seed[-_]?(?P<seed>\d+)", r"shard[-_]?(?P<shard>\d+)", r"@(?:checkpoint-|step)(?P<step>\d+)$"]
REVISION_STEP = re.compile(r"^(?:checkpoint-|step)(\d+)$")


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
    commit: str               # Hub commit sha, or sources.weights_identity of the local manifest: what the weights are
    run: str                  # stable label of the run, e.g. "pythia-seed0-shard0" or the repo id

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
    def repo_id(self) -> str:
        return self.source[len(HUB_PREFIX):]

    @property
    def local_dir(self) -> Path:
        """The checkpoint's directory (local refs only)."""
        source = Path(self.source)
        return source if (source / "config.json").is_file() and self.revision == source.name else source / self.revision


@dataclass
class LoadedCheckpoint:
    ref: CheckpointRef
    model: Any                # transformers causal LM, eval mode, fp32
    tokenizer: Any            # the checkpoint's own tokenizer
    directory: Path           # local directory holding the files (a download for Hub refs)
    max_length: int           # the context length of the architecture (lm-eval cannot read it for Mamba/RWKV)


# --- names and configs --------------------------------------------------------------------------------

def parse_name(text: str, pattern: Optional[str] = None) -> Dict[str, str]:
    """Named groups found in `text` by NAME_PATTERNS, then by the user's `pattern` (which wins)."""
    found: Dict[str, str] = {}
    for regex in NAME_PATTERNS + ([pattern] if pattern else []):
        try:
            match = re.search(regex, text, flags=re.IGNORECASE)
        except re.error as exc:
            raise ParcError(f"pattern={regex!r} is not a valid regular expression ({exc}): use named groups, "
                            f"e.g. pattern='seed(?P<seed>\\d+)'") from None
        if match:
            found.update({k: v for k, v in match.groupdict().items() if v is not None})
    return found


def identity_from_config(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """arch, size, seed, shard, data_seed of a Parc run config (portable_config), or {} for None."""
    if not config:
        return {}
    arch, data = config.get("arch") or {}, config.get("data") or {}
    return {"arch": arch.get("name"), "size": arch.get("size"), "seed": config.get("seed"),
            "shard": data.get("shard"), "data_seed": data.get("data_seed")}


def _int_or_none(value) -> Optional[int]:
    return None if value is None or value == "" else int(value)


def make_ref(identity: Dict[str, Any], named: Dict[str, str], model_type: Optional[str], step: Optional[int],
             tokens: Optional[int], source: str, revision: str, commit: str, run: str) -> CheckpointRef:
    """Manifest/config values first, then what the names say; the step must be known one way or another."""
    merged = {**named, **{k: v for k, v in identity.items() if v is not None}}
    step = step if step is not None else _int_or_none(named.get("step"))
    if step is None:
        raise ParcError(f"cannot tell the training step of {source}@{revision}: name its revisions checkpoint-N "
                        f"or stepN, or pass pattern= with a (?P<step>...) group")
    arch = merged.get("arch") or model_type
    if not arch:
        raise ParcError(f"cannot tell the architecture of {source}@{revision} (no Parc config, no config.json "
                        f"model_type): pass pattern= with an (?P<arch>...) group")
    return CheckpointRef(arch=str(arch).lower(), size=str(merged.get("size") or ""),
                         seed=_int_or_none(merged.get("seed")), shard=_int_or_none(merged.get("shard")),
                         data_seed=_int_or_none(merged.get("data_seed")), step=int(step),
                         tokens=_int_or_none(tokens), source=source, revision=revision, commit=commit, run=run)


def _model_type(config_file: Path) -> Optional[str]:
    try:
        return json.loads(Path(config_file).read_text()).get("model_type")
    except (OSError, ValueError):
        return None


# --- local runs ---------------------------------------------------------------------------------------

def local_run_config(run_dir: Path) -> Optional[Dict[str, Any]]:
    """`<run>/config.yaml`, else the config in the newest checkpoint's trainer state, else None."""
    path = Path(run_dir) / RUN_CONFIG
    if path.is_file():
        from omegaconf import OmegaConf

        try:
            return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        except Exception:  # a foreign or damaged file: fall back to the trainer state
            pass
    for checkpoint in reversed(complete_checkpoints(run_dir)):
        state = checkpoint / TRAINER_STATE
        if state.is_file():
            return json.loads(state.read_text()).get("config")
    return None


def weights_identity(manifest: Dict[str, Any]) -> str:
    """sha256 over the step and the sha256 of every file but the training state: what the weights are.

    Not the manifest file's own hash: the trainer rewrites the manifest when it prunes a checkpoint's training
    state, and the same weights must keep the same identity (or every result would be computed again)."""
    import hashlib

    files = {name: entry["sha256"] for name, entry in manifest.get("files", {}).items()
             if not name.startswith(STATE_DIR + "/")}
    return hashlib.sha256(json.dumps({"step": manifest.get("step"), "files": files}, sort_keys=True).encode()).hexdigest()


def local_refs(run_dir: Path, pattern: Optional[str]) -> List[CheckpointRef]:
    run_dir = Path(run_dir).resolve()
    checkpoints = complete_checkpoints(run_dir)
    if not checkpoints:
        raise ParcError(f"{run_dir} holds no complete checkpoint (checkpoint-N/ with {MANIFEST}): train it first, "
                        f"or pass a run directory or grid root that has checkpoints")
    identity = identity_from_config(local_run_config(run_dir))
    model_type = _model_type(checkpoints[-1] / "config.json")
    refs = []
    for path in checkpoints:
        manifest = json.loads((path / MANIFEST).read_text())
        refs.append(make_ref(identity, parse_name(f"{run_dir.name}@{path.name}", pattern), model_type,
                             step_of(path), manifest.get("tokens"), str(run_dir), path.name,
                             weights_identity(manifest), run_dir.name))
    return refs


def single_checkpoint_ref(directory: Path, pattern: Optional[str]) -> CheckpointRef:
    """A bare HF model directory (config.json + weights), Parc's or anyone's."""
    directory = Path(directory).resolve()
    manifest_file = directory / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    state = directory / TRAINER_STATE
    config = json.loads(state.read_text()).get("config") if state.is_file() else None
    weights = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    commit = weights_identity(manifest) if manifest else (sha256_file(weights[0]) if weights else "")
    return make_ref(identity_from_config(config), parse_name(f"{directory.parent.name}@{directory.name}", pattern),
                    _model_type(directory / "config.json"), manifest.get("step"), manifest.get("tokens"),
                    str(directory), directory.name, commit, directory.name)


def is_run_dir(path: Path) -> bool:
    return any(step_of(p) is not None for p in Path(path).glob("checkpoint-*"))


def expand_local(path: Path, pattern: Optional[str]) -> List[CheckpointRef]:
    """A run directory, a grid root (its run subdirectories) or one checkpoint directory."""
    if not path.is_dir():
        raise ParcError(f"runs={path}: no such directory; pass run directories, grid roots or hub:<repo>")
    if is_run_dir(path):
        return local_refs(path, pattern)
    if (path / "config.json").is_file():
        return [single_checkpoint_ref(path, pattern)]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
    if not runs:
        raise ParcError(f"{path} holds no runs (no checkpoint-N/ in it or its subdirectories): pass a run's "
                        f"output_dir or a grid root")
    return [ref for run in runs for ref in local_refs(run, pattern)]


# --- resolving runs= ----------------------------------------------------------------------------------

def split_runs(runs: Union[str, Sequence[str]]) -> List[str]:
    items = runs.split(",") if isinstance(runs, str) else [str(r) for r in runs]
    items = [item.strip() for item in items if item and item.strip()]
    if not items:
        raise ParcError("runs= is empty: pass run directories, grid roots or hub:<repo>[@<revision>], comma-separated")
    return items


def resolve_runs(runs: Union[str, Sequence[str]], steps: Optional[Sequence[int]] = None,
                 pattern: Optional[str] = None) -> List[CheckpointRef]:
    """Every checkpoint named by `runs`, restricted to `steps` when given, sorted by (run, step).

    Raises ParcError (one line) for a path that holds no run, a run with no complete checkpoint, a requested
    step a run does not have, or a Hub repo/revision that does not exist.
    """
    from parc.study.hubsource import hub_refs

    refs: List[CheckpointRef] = []
    for item in split_runs(runs):
        refs += hub_refs(item[len(HUB_PREFIX):], pattern) if item.startswith(HUB_PREFIX) else expand_local(Path(item), pattern)
    if steps is not None:
        wanted = sorted({int(s) for s in steps})
        by_source: Dict[str, set] = {}
        for ref in refs:
            by_source.setdefault(ref.source, set()).add(ref.step)
        for source, have in by_source.items():
            missing = [s for s in wanted if s not in have]
            if missing:
                raise ParcError(f"{source} has no checkpoint at step {', '.join(map(str, missing[:5]))} (it has "
                                f"{describe_steps(sorted(have))}): choose steps= among those")
        refs = [ref for ref in refs if ref.step in wanted]
    unique = {(ref.source, ref.revision): ref for ref in refs}  # a run named twice is evaluated once
    return sorted(unique.values(), key=lambda r: (r.source, r.step, r.revision))


def describe_steps(steps: List[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 8 else f"{', '.join(map(str, steps[:6]))} ... {steps[-1]}"


def run_config(ref: CheckpointRef) -> Optional[Dict[str, Any]]:
    """The training config Parc stored with the run (trainer_state / manifest), or None for foreign models."""
    if ref.is_hub:
        from parc.study.hubsource import hub_run_config

        return hub_run_config(ref)
    source = Path(ref.source)
    if is_run_dir(source):
        return local_run_config(source)
    state = source / TRAINER_STATE
    return json.loads(state.read_text()).get("config") if state.is_file() else None


def default_out(runs: Union[str, Sequence[str]], leaf: str) -> Path:
    """`<root of the first run>/<leaf>`: the grid root for a grid, the run's parent for a run dir."""
    first = split_runs(runs)[0]
    if first.startswith(HUB_PREFIX):
        repo = first[len(HUB_PREFIX):].split("@")[0]
        return Path.cwd() / leaf / repo.replace("/", "--")
    path = Path(first).resolve()
    if is_run_dir(path) or (path / "config.json").is_file():
        return path.parent / leaf
    return path / leaf


from parc.study.modelcache import ModelCache  # noqa: E402,F401  (part of this module's contract)
