"""`python -m parc.export rwkv <checkpoint dir | hub:org/name@revision> <out.pth> [--dtype fp32|fp16|bf16]`:
an RWKV checkpoint as BlinkDL's RWKV-4 state dict, the `.pth` the `rwkv` package (ChatRWKV) loads:
`RWKV(model="out.pth", strategy="cpu fp32")`. A Hub revision is downloaded (verified against its manifest)
first; endpoint and token are huggingface_hub's usual settings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from parc.errors import ParcError, exit_on_error


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
    from parc.hub import refuse_offline_env
    from parc.hubrepo import REPO_ID, HubRepo

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


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.export", description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True)
    rwkv = formats.add_parser("rwkv", help="BlinkDL RWKV-4 .pth for the rwkv package")
    rwkv.add_argument("source", help="checkpoint directory, or hub:org/name@revision")
    rwkv.add_argument("out", type=Path, help="the .pth to write")
    rwkv.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                      help="cast the weights (default: as trained)")
    args = parser.parse_args(argv)

    from parc.rwkvformat import export_rwkv

    if args.out.is_dir():
        raise ParcError(f"{args.out} is a directory: give the path of the .pth file to write")
    with tempfile.TemporaryDirectory(prefix="parc-export-") as work:
        written = export_rwkv(checkpoint_source(args.source, Path(work)), args.out, args.dtype)
    print(f"wrote {written} (BlinkDL RWKV-4; load with rwkv.model.RWKV(model={str(written)!r}, strategy='cpu fp32'))")


if __name__ == "__main__":
    main()
