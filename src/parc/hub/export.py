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
    from parc.hub.reader import complete_revision, fetch_checkpoint, is_hub_spec, open_repo, parse_hub_spec

    if not is_hub_spec(source):
        path = Path(source)
        if not path.is_dir():
            raise ParcError(f"{source} is not a directory: give a checkpoint-N directory or hub:<org/name>@<revision>")
        return path
    spec = parse_hub_spec(source)
    if spec.revision is None:
        raise ParcError(f"{source}: name the revision, e.g. {spec}@checkpoint-100")
    repo = open_repo(spec.repo_id, what=source)
    return fetch_checkpoint(repo, complete_revision(repo, spec.revision, source), work_dir)


def export_rwkv_from(source: str, out: Path, dtype: Optional[str]) -> Path:
    """parc.export rwkv: a local checkpoint directory or hub:<org/name>@<revision> -> BlinkDL's .pth at `out`."""
    import tempfile

    if out.is_dir():
        raise ParcError(f"{out} is a directory: give the path of the .pth file to write")
    with tempfile.TemporaryDirectory(prefix="parc-export-") as work:
        return export_rwkv(checkpoint_source(source, Path(work)), out, dtype)
