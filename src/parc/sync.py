"""`python -m parc.sync <output_dir> [dry_run=true]`: push the checkpoints a run staged (hub.mode=offline) or left
pending (crash, preemption, lost network) to its Hub repo — exactly those, in step order, then `main` if the run
finished. Everything it needs (repo, privacy, what to push) is in `<output_dir>/hub_journal/`; the endpoint
and token are huggingface_hub's usual settings (HF_ENDPOINT, HF_TOKEN or `hf auth login`). `dry_run=true` lists
what would be pushed and pushes nothing.
"""

from __future__ import annotations

from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.sync",
    __doc__,
    paths=Paths("output_dir"),
    keys=(Key("dry_run", bool, False, "list what would be pushed, push nothing"),),
    deprecated={"--dry-run": "dry_run"},
    example="python -m parc.sync runs/parc/pythia-seed0-shard0",
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.hub import sync_pending
    from parc.training import log_to_stderr

    log_to_stderr()
    sync_pending(args.paths[0], args.dry_run)


if __name__ == "__main__":
    main()
