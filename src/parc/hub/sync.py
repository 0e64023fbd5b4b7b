"""Publishing what a run left pending (parc.sync): every revision its journal stages that is not on the Hub yet.

The journal (hub_journal/ in the run's output_dir) names the repo, the branch template and each revision's
state; `sync_pending` pushes the pending ones in step order, one commit each, with the run's pacing, then refreshes
the model card on `main` (one commit, only when the run's files changed it: evaluations added, say).
"""

from __future__ import annotations

from pathlib import Path

from parc.errors import ParcError
from parc.hub.publisher import Publisher


def sync_pending(output_dir: Path, dry_run: bool) -> None:
    if not output_dir.is_dir():
        raise ParcError(f"{output_dir} is not a directory: give the output_dir of a run")
    publisher = Publisher.from_journal(output_dir)
    pending = [e["revision"] for e in publisher.journal.entries() if e["state"] == "pending"]
    if not pending:
        print(f"nothing to push: every revision staged in {publisher.journal.dir} is on the Hub")
    else:
        print(
            f"{'would push' if dry_run else 'pushing'} {len(pending)} revisions to {publisher.repo_id}: "
            f"{', '.join(pending)}",
            flush=True,
        )
    if dry_run:
        print("would refresh the model card on main (README.md) if the run's files changed it")
        return
    if pending:
        publisher.start()
        publisher.close()
        print(f"pushed {len(pending)} revisions to {publisher.repo_id}")
    refresh_card(publisher)


def refresh_card(publisher: Publisher) -> None:
    """main's model card follows the run's files (parc.evaluate results added after the run, say)."""
    refreshed = publisher.refresh_card()
    if refreshed is not None:
        print(f"model card on main of {publisher.repo_id}: {'updated' if refreshed else 'up to date'}")
