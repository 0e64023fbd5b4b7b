"""The publisher's journal, `<output_dir>/hub_journal/`: the target repo (`repo.json`) and one small JSON per
revision (pending, pushed or abandoned), written atomically, so a push survives a crash; and the lock that keeps
a run and parc.sync from pushing the same revisions at once. Read by the publisher, parc.sync, the grid status
and the model card (which revisions are published, and where).
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError
from parc.store.fileio import atomic_write_json

JOURNAL_DIR = "hub_journal"
TARGET_FILE = "repo.json"  # where the journal's revisions go: what parc.sync needs, no config required
MAIN = "main"


class Journal:
    """`<output_dir>/hub_journal/`: the target repo, and one JSON per revision: pending, pushed or abandoned."""

    def __init__(self, output_dir: Path):
        self.dir = Path(output_dir) / JOURNAL_DIR

    def _write(self, name: str, data: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir / name, data)  # fsyncs the directory too: the rename survives a power cut

    def save_target(self, target: dict) -> None:
        self._write(TARGET_FILE, target)

    def target(self) -> Optional[dict]:
        path = self.dir / TARGET_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def record(self, entry: dict) -> None:
        self._write(f"{entry['revision']}.json", {**entry, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def entries(self) -> List[dict]:
        """Every revision, in push order: checkpoints by step, then main."""
        found = [json.loads(p.read_text()) for p in self.dir.glob("*.json") if p.name != TARGET_FILE]
        return sorted(found, key=lambda e: (e["revision"] == MAIN, e["step"]))

    def last_push(self) -> Optional[float]:
        """When the newest confirmed push happened (time.time()), so a new process keeps the commit pace."""
        times = [e.get("pushed_at") for e in self.entries() if e.get("state") == "pushed"]
        return max((t for t in times if t is not None), default=None)

    def lock(self):
        """An exclusive lock held while pushing, so a run and parc.sync never push the same revisions at once.
        The kernel drops it when the process dies, kill -9 included."""
        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ParcError(
                f"another process is pushing the checkpoints of {self.dir.parent} right now; wait for it to finish"
            ) from None
        return handle
