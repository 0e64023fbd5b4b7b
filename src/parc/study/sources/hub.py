"""`runs=hub:<repo>[@<rev>]`: a Hub repo's checkpoint revisions as CheckpointRefs, through the real client.

Revisions are the repo's branches named `checkpoint-N` (Parc) or `stepN` (Pythia), sorted by N (the Hub
sorts branch names as text), or `main` when it has none. A Parc revision carries `parc_checkpoint.json`
(step, tokens) and, when its training state was pushed, the run's config; a foreign repo is described by
its `config.json` (model_type) and by the names of the repo and revision (`sources.NAME_PATTERNS`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from parc.store.checkpoint import MANIFEST
from parc.errors import ParcError
from parc.study.sources.refs import (HUB_PREFIX, REVISION_STEP, TRAINER_STATE, CheckpointRef, describe_steps,
                             identity_from_config, make_ref, parse_name)

LOOKUP_THREADS = 8  # two small reads per revision; a Parc run has hundreds


def _errors():
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    return RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError


def list_branches(repo_id: str) -> Dict[str, str]:
    """branch -> head commit; a missing repo is a one-line ParcError."""
    from huggingface_hub import HfApi

    repo_missing, _, _ = _errors()
    try:
        refs = HfApi().list_repo_refs(repo_id)
    except repo_missing:
        raise ParcError(f"runs=hub:{repo_id}: no such repository on the Hub (or it is private: set HF_TOKEN); "
                        f"check the repo id") from None
    except Exception as exc:  # connection refused, offline mode, 5xx: nothing to evaluate from
        raise ParcError(f"runs=hub:{repo_id}: cannot list its revisions ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); check HF_ENDPOINT / the network") from None
    return {ref.name: ref.target_commit for ref in refs.branches}


def read_json(repo_id: str, commit: str, path: str) -> Optional[Any]:
    """A small JSON file of one commit, or None when the commit does not have it."""
    from huggingface_hub import hf_hub_download

    _, _, entry_missing = _errors()
    try:
        return json.loads(open(hf_hub_download(repo_id, path, revision=commit)).read())
    except entry_missing:
        return None


def chosen_revisions(repo_id: str, revision: Optional[str], branches: Dict[str, str]) -> List[str]:
    if revision is not None:
        if revision not in branches:
            stepped = sorted((int(m.group(1)), name) for name in branches if (m := REVISION_STEP.match(name)))
            known = describe_steps([s for s, _ in stepped]) if stepped else ", ".join(sorted(branches)) or "none"
            raise ParcError(f"runs=hub:{repo_id}@{revision}: the repository has no revision {revision!r} "
                            f"(its checkpoint steps: {known}); list them with python -m parc.revisions {repo_id}")
        return [revision]
    stepped = sorted((int(m.group(1)), name) for name in branches if (m := REVISION_STEP.match(name)))
    if stepped:
        return [name for _, name in stepped]
    if "main" in branches:
        return ["main"]
    raise ParcError(f"runs=hub:{repo_id} has no revisions to evaluate: push checkpoints first")


def hub_refs(spec: str, pattern: Optional[str]) -> List[CheckpointRef]:
    """`<repo>` or `<repo>@<rev>` -> one ref per revision."""
    repo_id, _, revision = spec.partition("@")
    if not repo_id or "/" not in repo_id:
        raise ParcError(f"runs=hub:{spec}: write hub:<org>/<name> or hub:<org>/<name>@<revision>")
    branches = list_branches(repo_id)
    names = chosen_revisions(repo_id, revision or None, branches)

    def describe(name: str):
        commit = branches[name]
        return name, commit, read_json(repo_id, commit, MANIFEST)

    with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
        found = list(pool.map(describe, names))
    newest = found[-1]
    config = None
    if newest[2] and TRAINER_STATE in newest[2].get("files", {}):
        config = (read_json(repo_id, newest[1], TRAINER_STATE) or {}).get("config")
    model_type = (read_json(repo_id, newest[1], "config.json") or {}).get("model_type")
    identity = identity_from_config(config)
    return [make_ref(identity, parse_name(f"{repo_id}@{name}", pattern), model_type,
                     (manifest or {}).get("step"), (manifest or {}).get("tokens"), f"{HUB_PREFIX}{repo_id}", name,
                     commit, repo_id) for name, commit, manifest in found]


def hub_run_config(ref: CheckpointRef) -> Optional[Dict[str, Any]]:
    manifest = read_json(ref.repo_id, ref.commit, MANIFEST)
    if not manifest or TRAINER_STATE not in manifest.get("files", {}):
        return None
    return (read_json(ref.repo_id, ref.commit, TRAINER_STATE) or {}).get("config")


def download(ref: CheckpointRef, local_dir: Optional[str]) -> str:
    """The revision's model files (never its training state) at its exact commit; returns the directory."""
    from huggingface_hub import snapshot_download

    return snapshot_download(ref.repo_id, revision=ref.commit, local_dir=local_dir,
                             ignore_patterns=["training_state/*", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5"])
