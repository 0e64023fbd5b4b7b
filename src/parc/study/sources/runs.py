"""Which checkpoints a study reads, and loading them: `runs=` / `steps=` -> CheckpointRef -> a loaded model.

`runs=` is a comma-separated list of local run directories (an `output_dir` holding `checkpoint-N/`), grid
roots (directories holding such runs), a single local checkpoint directory (any HF causal LM), `hub:<org/name>`
(every `checkpoint-N` / `stepN` revision of a Hub repo), `hub:<org/name>@<revision>` and `neox:<dir>` (a raw
GPT-NeoX `global_stepN` directory, or every tag of its save directory: parc.study.sources.neox).
Architecture, seed, shard and step come from Parc's manifests and run config where present, else from
repository and revision names (`NAME_PATTERNS`, or the user's `pattern=` regex with named groups), else a
one-line error asks for them.

CONTRACT (shared by parc.evaluate and the surprisal/n-gram analysis):

    refs = resolve_runs("runs/parc,hub:org/repo@checkpoint-40", steps=[10, 20])   # List[CheckpointRef]
    cache = ModelCache(keep_downloads=True)    # parc.study.sources.model_cache
    with cache.open(ref) as loaded:        # weights read once; one module per architecture reused
        loaded.model, loaded.tokenizer, loaded.directory, loaded.max_length
    run_config(ref)                        # the run's training config (dict) when Parc wrote it, else None
    default_out(runs, "evals")             # <root of the first run>/evals
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from parc.config import read_run_config
from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST, STATE_DIR, complete_checkpoints, read_manifest, read_trainer_state, step_of
from parc.store.fileio import sha256_file
from parc.study.sources.refs import (  # noqa: F401
    HUB_PREFIX,
    IDENTITY_COLUMNS,
    NAME_PATTERNS,
    NEOX_PREFIX,
    RUN_CONFIG,
    TRAINER_STATE,
    CheckpointRef,
    LoadedCheckpoint,
    describe_steps,
    identity_from_config,
    make_ref,
    parse_name,
)


def _model_type(config_file: Path) -> Optional[str]:
    try:
        return json.loads(Path(config_file).read_text()).get("model_type")
    except (OSError, ValueError):
        return None


# --- local runs ---------------------------------------------------------------------------------------


def local_run_config(run_dir: Path) -> Optional[Dict[str, Any]]:
    """`<run>/config.yaml`, else the config in the newest checkpoint's trainer state, else None."""
    try:
        config = read_run_config(run_dir)
    except ParcError:  # a foreign or damaged file: fall back to the trainer state
        config = None
    if config is not None:
        return config
    for checkpoint in reversed(complete_checkpoints(run_dir)):
        state = read_trainer_state(checkpoint)
        if state is not None:
            return state.get("config")
    return None


def weights_identity(manifest: Dict[str, Any]) -> str:
    """sha256 over the step and the sha256 of every file but the training state: what the weights are.

    Not the manifest file's own hash: the trainer rewrites the manifest when it prunes a checkpoint's training
    state, and the same weights must keep the same identity (or every result would be computed again)."""
    import hashlib

    files = {
        name: entry["sha256"]
        for name, entry in manifest.get("files", {}).items()
        if not name.startswith(STATE_DIR + "/")
    }
    return hashlib.sha256(
        json.dumps({"step": manifest.get("step"), "files": files}, sort_keys=True).encode()
    ).hexdigest()


def local_refs(run_dir: Path, pattern: Optional[str]) -> List[CheckpointRef]:
    run_dir = Path(run_dir).resolve()
    checkpoints = complete_checkpoints(run_dir)
    if not checkpoints:
        raise ParcError(
            f"{run_dir} holds no complete checkpoint (checkpoint-N/ with {MANIFEST}): train it first, "
            f"or pass a run directory or grid root that has checkpoints"
        )
    identity = identity_from_config(local_run_config(run_dir))
    model_type = _model_type(checkpoints[-1] / "config.json")
    refs = []
    for path in checkpoints:
        manifest = read_manifest(path)
        refs.append(
            make_ref(
                identity,
                parse_name(f"{run_dir.name}@{path.name}", pattern),
                model_type,
                step_of(path),
                manifest.get("tokens"),
                str(run_dir),
                path.name,
                weights_identity(manifest),
                run_dir.name,
            )
        )
    return refs


def single_checkpoint_ref(directory: Path, pattern: Optional[str]) -> CheckpointRef:
    """A bare HF model directory (config.json + weights), Parc's or anyone's."""
    directory = Path(directory).resolve()
    manifest = read_manifest(directory) if (directory / MANIFEST).is_file() else {}
    config = (read_trainer_state(directory) or {}).get("config")
    weights = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    commit = weights_identity(manifest) if manifest else (sha256_file(weights[0]) if weights else "")
    return make_ref(
        identity_from_config(config),
        parse_name(f"{directory.parent.name}@{directory.name}", pattern),
        _model_type(directory / "config.json"),
        manifest.get("step"),
        manifest.get("tokens"),
        str(directory),
        directory.name,
        commit,
        directory.name,
    )


def is_run_dir(path: Path) -> bool:
    return any(step_of(p) is not None for p in Path(path).glob("checkpoint-*"))


def expand_local(path: Path, pattern: Optional[str]) -> List[CheckpointRef]:
    """A run directory, a grid root (its run subdirectories) or one checkpoint directory."""
    if not path.is_dir():
        raise ParcError(f"runs={path}: no such directory; pass run directories, grid roots or hub:<org/name>")
    if is_run_dir(path):
        return local_refs(path, pattern)
    if (path / "config.json").is_file():
        return [single_checkpoint_ref(path, pattern)]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
    if not runs:
        raise ParcError(
            f"{path} holds no runs (no checkpoint-N/ in it or its subdirectories): pass a run's "
            f"output_dir or a grid root"
        )
    return [ref for run in runs for ref in local_refs(run, pattern)]


# --- resolving runs= ----------------------------------------------------------------------------------


def split_runs(runs: Union[str, Sequence[str]]) -> List[str]:
    items = runs.split(",") if isinstance(runs, str) else [str(r) for r in runs]
    items = [item.strip() for item in items if item and item.strip()]
    if not items:
        raise ParcError(
            "runs= is empty: pass run directories, grid roots or hub:<org/name>[@<revision>], comma-separated"
        )
    return items


def refs_of(item: str, pattern: Optional[str]) -> List[CheckpointRef]:
    """One `runs=` item's checkpoints: a Hub repo or revision, a raw NeoX checkpoint, or a local path."""
    if item.startswith(HUB_PREFIX):
        from parc.study.sources.hub import hub_refs

        return hub_refs(item, pattern)
    if item.startswith(NEOX_PREFIX):
        from parc.study.sources.neox import neox_refs

        return neox_refs(item, pattern)
    return expand_local(Path(item), pattern)


def resolve_runs(
    runs: Union[str, Sequence[str]], steps: Optional[Sequence[int]] = None, pattern: Optional[str] = None
) -> List[CheckpointRef]:
    """Every checkpoint named by `runs`, restricted to `steps` when given, sorted by (run, step).

    Raises ParcError (one line) for a path that holds no run, a run with no complete checkpoint, a requested
    step a run does not have, or a Hub repo/revision that does not exist.
    """
    refs: List[CheckpointRef] = []
    for item in split_runs(runs):
        refs += refs_of(item, pattern)
    if steps is not None:
        wanted = sorted({int(s) for s in steps})
        by_source: Dict[str, set] = {}
        for ref in refs:
            by_source.setdefault(ref.source, set()).add(ref.step)
        for source, have in by_source.items():
            missing = [s for s in wanted if s not in have]
            if missing:
                raise ParcError(
                    f"{source} has no checkpoint at step {', '.join(map(str, missing[:5]))} (it has "
                    f"{describe_steps(sorted(have))}): choose steps= among those"
                )
        refs = [ref for ref in refs if ref.step in wanted]
    unique = {(ref.source, ref.revision): ref for ref in refs}  # a run named twice is evaluated once
    return sorted(unique.values(), key=lambda r: (r.source, r.step, r.revision))


def tokenizer_dir(ref: CheckpointRef) -> Path:
    """The directory holding the checkpoint's tokenizer files (local and raw NeoX refs)."""
    if ref.is_neox:
        from parc.study.sources.neox import tokenizer_dir as neox_tokenizer_dir

        return neox_tokenizer_dir(ref)
    return ref.local_dir


def run_config(ref: CheckpointRef) -> Optional[Dict[str, Any]]:
    """The training config Parc stored with the run (trainer_state / manifest), or None for foreign models."""
    if ref.is_hub:
        from parc.study.sources.hub import hub_run_config

        return hub_run_config(ref)
    if ref.is_neox:  # NeoX's args are not a Parc config
        return None
    source = Path(ref.source)
    if is_run_dir(source):
        return local_run_config(source)
    return (read_trainer_state(source) or {}).get("config")


def default_out(runs: Union[str, Sequence[str]], leaf: str) -> Path:
    """`<root of the first run>/<leaf>`: the grid root for a grid, the run's (or raw save dir's) parent otherwise."""
    first = split_runs(runs)[0]
    if first.startswith(HUB_PREFIX):
        from parc.hub.reader import parse_hub_spec

        return Path.cwd() / leaf / parse_hub_spec(first, "runs").repo_id.replace("/", "--")
    if first.startswith(NEOX_PREFIX):  # beside the raw save dir, as beside a run dir
        from parc.store.neox_raw import is_tag

        path = Path(first.removeprefix(NEOX_PREFIX)).resolve()
        return (path.parent if is_tag(path) else path).parent / leaf
    path = Path(first).resolve()
    if is_run_dir(path) or (path / "config.json").is_file():
        return path.parent / leaf
    return path / leaf
