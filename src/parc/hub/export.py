"""parc.export: a local checkpoint directory or a complete Hub revision, written in another format.

The one format today is BlinkDL's RWKV-4 .pth (parc.hub.rwkvformat). A Hub revision is downloaded and
verified against its manifest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from parc.errors import ParcError
from parc.hub.rwkvformat import export_rwkv


def checkpoint_source(source: str, work_dir: Path) -> Path:
    """A local checkpoint directory, or a complete Hub revision downloaded into work_dir."""
    if not source.startswith("hub:"):
        path = Path(source)
        if not path.is_dir():
            raise ParcError(f"{source} is not a directory: give a checkpoint-N directory or hub:<org/name>@<revision>")
        return path
    repo_id, sep, revision = source[len("hub:"):].partition("@")
    if not sep or not revision:
        raise ParcError(f"{source}: name the revision, e.g. hub:{repo_id or 'org/name'}@checkpoint-100")
    from parc.hub.publisher import refuse_offline_env
    from parc.hub.repo import REPO_ID, HubRepo

    if not REPO_ID.match(repo_id):
        raise ParcError(f"{repo_id!r} is not a repo id: give hub:org/name@revision")
    refuse_offline_env()
    repo = HubRepo(repo_id)
    if not repo.exists():
        raise ParcError(f"repository {repo_id} not found on the Hub (check the name and HF_TOKEN)")
    if revision not in repo.branches():
        raise ParcError(f"{revision} is not a revision of {repo_id}; python -m parc.revisions {repo_id} lists them")
    remote = repo.inspect(revision)
    if remote.manifest is None:
        raise ParcError(f"revision {revision} of {repo_id} is incomplete ({remote.problem}); pick a complete one")
    return repo.download(remote, work_dir)


def export_rwkv_from(source: str, out: Path, dtype: Optional[str]) -> Path:
    """parc.export rwkv: a local checkpoint directory or hub:<org/name>@<revision> -> BlinkDL's .pth at `out`."""
    import tempfile

    if out.is_dir():
        raise ParcError(f"{out} is a directory: give the path of the .pth file to write")
    with tempfile.TemporaryDirectory(prefix="parc-export-") as work:
        return export_rwkv(checkpoint_source(source, Path(work)), out, dtype)
