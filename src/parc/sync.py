"""`python -m parc.sync <output_dir>`: push the checkpoints a run staged (hub.mode=offline) or left pending
(crash, preemption, lost network) to its Hub repo — exactly those, in step order, then `main` if the run
finished. Everything it needs (repo, privacy, what to push) is in `<output_dir>/hub_journal/`; the endpoint
and token are huggingface_hub's usual settings (HF_ENDPOINT, HF_TOKEN or `hf auth login`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parc.errors import ParcError, exit_on_error


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="the run's output_dir (holds hub_journal/)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be pushed, push nothing")
    args = parser.parse_args(argv)

    from parc.hub import Publisher
    from parc.metrics import log_to_stderr

    if not args.output_dir.is_dir():
        raise ParcError(f"{args.output_dir} is not a directory: give the output_dir of a run")
    log_to_stderr()
    publisher = Publisher.from_journal(args.output_dir)
    pending = [e["revision"] for e in publisher.journal.entries() if e["state"] == "pending"]
    if not pending:
        print(f"nothing to push: every revision staged in {publisher.journal.dir} is on the Hub")
        return
    print(f"{'would push' if args.dry_run else 'pushing'} {len(pending)} revisions to {publisher.repo_id}: "
          f"{', '.join(pending)}", flush=True)
    if args.dry_run:
        return
    publisher.start()
    publisher.close()
    print(f"pushed {len(pending)} revisions to {publisher.repo_id}")


if __name__ == "__main__":
    main()
