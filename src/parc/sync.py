"""`python -m parc.sync <output_dir>`: push the checkpoints a run staged (hub.mode=offline) or left pending
(crash, preemption, lost network) to its Hub repo — exactly those, in step order, then `main` if the run
finished. Everything it needs (repo, privacy, what to push) is in `<output_dir>/hub_journal/`; the endpoint
and token are huggingface_hub's usual settings (HF_ENDPOINT, HF_TOKEN or `hf auth login`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parc.errors import exit_on_error


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="the run's output_dir (holds hub_journal/)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be pushed, push nothing")
    args = parser.parse_args(argv)

    from parc.hub import sync_pending
    from parc.training import log_to_stderr

    log_to_stderr()
    sync_pending(args.output_dir, args.dry_run)

if __name__ == "__main__":
    main()
