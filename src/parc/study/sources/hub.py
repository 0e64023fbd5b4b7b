"""`runs=hub:<org/name>[@<revision>]`: a Hub repo's checkpoint revisions as CheckpointRefs, read through
parc.hub.reader (the one `hub:` grammar, the retry policy, verified fetches).

Revisions are the repo's numbered branches, `checkpoint-N` (Parc) or `stepN` (Pythia): the branch template is
guessed from the branches (parc.hub.branches) and they are sorted by N (the Hub sorts branch names as text),
or `main` when it has none. A Parc revision carries `parc_checkpoint.json` (step, tokens) and, when its
training state was pushed, the run's config; a foreign repo is described by its `config.json` (model_type)
and by the names of the repo and revision (`sources.NAME_PATTERNS`). A download is verified: against the
manifest for a Parc revision, against the Hub's LFS sha256 / git blob ids otherwise.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST, STATE_DIR
from parc.study.sources.refs import (
    HUB_PREFIX,
    TRAINER_STATE,
    CheckpointRef,
    describe_steps,
    identity_from_config,
    make_ref,
    parse_name,
)

LOOKUP_THREADS = 8  # two small reads per revision; a Parc run has hundreds
MODEL_ONLY = [f"{STATE_DIR}/*", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5"]  # never the training state


def _repo(repo_id: str, what: Optional[str] = None):
    """The repo, checked to exist (one-line error otherwise)."""
    from parc.hub.reader import open_repo

    return open_repo(repo_id, what=what or f"runs={HUB_PREFIX}{repo_id}")


def read_json(repo_id: str, commit: str, path: str) -> Optional[Any]:
    """A small JSON file of one commit, or None when the commit does not have it."""
    from parc.hub.reader import READ_RETRY
    from parc.hub.repo import HubRepo

    return HubRepo(repo_id, READ_RETRY).read_json(commit, path, missing_ok=True)


def chosen_revisions(repo, revision: Optional[str], branches: Dict[str, str]) -> List[str]:
    """The revisions `runs=` names: the one given, else every numbered branch by step, else main."""
    from parc.hub.reader import revisions_by_step

    stepped = revisions_by_step(repo, branches)
    if revision is not None:
        if revision not in branches:
            known = describe_steps([s for s, _ in stepped]) if stepped else ", ".join(sorted(branches)) or "none"
            raise ParcError(
                f"runs=hub:{repo.repo_id}@{revision}: the repository has no revision {revision!r} "
                f"(its checkpoint steps: {known}); list them with python -m parc.revisions {repo.repo_id}"
            )
        return [revision]
    if stepped:
        return [name for _, name in stepped]
    if "main" in branches:
        return ["main"]
    raise ParcError(f"runs=hub:{repo.repo_id} has no revisions to evaluate: push checkpoints first")


def hub_refs(spec: str, pattern: Optional[str]) -> List[CheckpointRef]:
    """`hub:<org/name>[@<revision>]` (the `hub:` may be left out) -> one ref per revision."""
    from parc.hub.reader import parse_hub_spec

    text = spec if spec.startswith(HUB_PREFIX) else f"{HUB_PREFIX}{spec}"
    parsed = parse_hub_spec(text, "runs")
    repo_id = parsed.repo_id
    repo = _repo(repo_id, f"runs={text}")
    branches = repo.branches()
    names = chosen_revisions(repo, parsed.revision, branches)

    def describe(name: str):
        commit = branches[name]
        return name, commit, repo.read_json(commit, MANIFEST, missing_ok=True)

    with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
        found = list(pool.map(describe, names))
    newest = found[-1]
    config = None
    if newest[2] and TRAINER_STATE in newest[2].get("files", {}):
        config = (repo.read_json(newest[1], TRAINER_STATE, missing_ok=True) or {}).get("config")
    model_type = (repo.read_json(newest[1], "config.json", missing_ok=True) or {}).get("model_type")
    identity = identity_from_config(config)
    return [
        make_ref(
            identity,
            parse_name(f"{repo_id}@{name}", pattern),
            model_type,
            (manifest or {}).get("step"),
            (manifest or {}).get("tokens"),
            f"{HUB_PREFIX}{repo_id}",
            name,
            commit,
            repo_id,
        )
        for name, commit, manifest in found
    ]


def hub_run_config(ref: CheckpointRef) -> Optional[Dict[str, Any]]:
    manifest = read_json(ref.repo_id, ref.commit, MANIFEST)
    if not manifest or TRAINER_STATE not in manifest.get("files", {}):
        return None
    return (read_json(ref.repo_id, ref.commit, TRAINER_STATE) or {}).get("config")


def download(ref: CheckpointRef, local_dir: Optional[str]) -> str:
    """The revision's model files (never its training state) at its exact commit, verified, in `local_dir`
    (or a directory beside the client's cache); returns the directory."""
    from parc.hub.reader import READ_RETRY, cache_dir_for, fetch_revision
    from parc.hub.repo import HubRepo

    target = Path(local_dir) if local_dir else cache_dir_for(ref.repo_id, ref.commit)
    return str(fetch_revision(HubRepo(ref.repo_id, READ_RETRY), ref.commit, target, exclude=MODEL_ONLY))
