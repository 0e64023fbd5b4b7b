"""Publish every checkpoint as a `checkpoint-N` Hub revision while training runs, and resume from one.

`Publisher` (main process only): `submit(step, dir)` first records the push in a durable journal
(`<output_dir>/hub_journal/`, one small JSON per revision, written atomically), then hands it to a
background uploader thread through a bounded queue, so training never waits for the network unless
uploads fall a whole queue behind. `close(final_step)` waits for the queue, then makes `main` equal the
final checkpoint. A crash, kill -9 or preemption loses nothing: the next `start()` (or
`python -m parc.sync <output_dir>`) pushes what the journal left pending. Each revision is one commit;
commits are spaced by `hub.max_commits_per_hour` and a 429 is waited out in the uploader thread (see
`parc.hub.pacing`), so training never waits for the Hub's commit limit; `close()` waits `hub.wait_at_end` at
most and leaves the rest pending in the journal. With `hub.mode=offline`
nothing is sent; the journal stages the revisions for `parc.sync` to push later from a login node.

`resolve_hub_checkpoint` finds the newest complete revision (by step number) that holds the training
state, or the one asked for, and downloads it into `<output_dir>/checkpoint-N`, verified.
The token is never handled here: huggingface_hub reads HF_TOKEN or its login cache itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

from parc.errors import ParcError
from parc.hub.branches import BranchTemplate
from parc.hub.journal import JOURNAL_DIR, MAIN, Journal
from parc.hub.pacing import HUB_LIMIT_PER_HOUR, CommitPacer, PushInterrupted
from parc.hub.repo import HubRepo, RetryPolicy, describe, repo_id_for
from parc.store.checkpoint import checkpoint_path

log = logging.getLogger("parc.hub.publisher")

PREEMPTED_WAIT_S = 60.0  # at most this long for pending pushes when a run stops before its end (preemption)


def refuse_offline_env() -> None:
    from parc.hub.repo import offline_mode

    if offline_mode():
        raise ParcError(
            "HF_HUB_OFFLINE=1 is set, so the Hub cannot be reached: unset it, or train with "
            "hub.mode=offline and push later with python -m parc.sync <output_dir>"
        )


def local_paths(cfg, output_dir: Path) -> List[str]:
    """This machine's directories that must not appear in anything published."""
    found = set()
    for place in (output_dir, cfg.paths.root, cfg.paths.output_root, cfg.data.dir):
        path = Path(str(place)).expanduser()
        for form in (path.absolute(), path.resolve()):
            if len(form.parts) > 2:  # "/tmp" or "/home" alone would match innocent text
                found.add(str(form))
    return sorted(found)


class Publisher:
    """Pushes checkpoints to the Hub in the background, journaled; see the module docstring."""

    def __init__(self, output_dir: Path, target: dict, offline: bool, queue_size: Optional[int] = None):
        self.output_dir = Path(output_dir)
        self.journal = Journal(output_dir)
        self.target, self.offline = target, offline
        # Unbounded by default: a queued revision is a small dict (and a journal entry), so waiting out the
        # Hub's commit limit never blocks training; hub.queue_size=N restores the old back-pressure.
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size) if queue_size else 0)
        self._stop = threading.Event()  # set when hub.wait_at_end is over: every wait of the uploader ends
        self.wait_s: Optional[float] = None  # how long close() waits; None: until every push is done
        self._pending: Dict[str, dict] = {}  # revision -> its newest entry, until that push is confirmed
        self._lock = threading.Lock()
        self._failure: Optional[ParcError] = None
        self._thread: Optional[threading.Thread] = None
        self._lock_handle = None
        self.repo: Optional[HubRepo] = None

    @classmethod
    def from_config(cls, cfg, output_dir: Path, is_main_process: bool) -> Optional["Publisher"]:
        """None when hub.repo_id is null, and on every process but the main one (which alone pushes)."""
        hub = cfg.hub
        if hub.repo_id is None or not is_main_process:
            return None
        target = {
            "repo_id": repo_id_for(cfg),
            "private": bool(hub.private),
            "push_train_state": bool(hub.push_train_state),
            "branch": str(hub.branch),
            "queue_size": hub.queue_size,
            "retry": asdict(RetryPolicy.from_config(hub)),
            "local_paths": local_paths(cfg, Path(output_dir)),
            "max_commits_per_hour": float(hub.max_commits_per_hour),
            "wait_at_end": float(hub.wait_at_end),
            "extra_formats": list(hub.extra_formats),
        }
        publisher = cls(output_dir, target, offline=hub.mode == "offline", queue_size=hub.queue_size)
        publisher.wait_s = float(hub.wait_at_end)
        return publisher

    @classmethod
    def from_journal(cls, output_dir: Path) -> "Publisher":
        """The publisher of a run that staged (or left pending) revisions: what parc.sync uses."""
        target = Journal(output_dir).target()
        if target is None:
            raise ParcError(
                f"{output_dir} has no {JOURNAL_DIR}/: nothing was staged there; train with "
                "hub.repo_id=<org/name> (hub.mode=offline to stage without network) first"
            )
        return cls(output_dir, target, offline=False, queue_size=target.get("queue_size"))

    @property
    def repo_id(self) -> str:
        return self.target["repo_id"]

    @property
    def branch_template(self) -> str:
        # A journal written before hub.branch existed names a prefix instead
        return self.target.get("branch") or f"{self.target['prefix']}{{N}}"

    def revision(self, step: int) -> str:
        return BranchTemplate(self.branch_template).name(step)

    # --- the trainer's side -----------------------------------------------------------------------

    def start(self) -> None:
        """Create the repo (a permanent failure raises here, before any training); re-queue pending pushes."""
        self.journal.save_target(self.target)
        pending = [e for e in self.journal.entries() if e["state"] == "pending"]
        with self._lock:
            self._pending = {e["revision"]: e for e in pending}
        if self.offline:
            log.info(
                "hub.mode=offline: checkpoints are staged in %s; push them with python -m parc.sync %s",
                self.journal.dir,
                self.output_dir,
            )
            return
        refuse_offline_env()
        self._lock_handle = self.journal.lock()
        self.repo = self._connect()
        self.repo.ensure(private=self.target["private"])
        self._thread = threading.Thread(target=self._upload_loop, name="parc-hub-uploader", daemon=True)
        self._thread.start()
        if pending:
            log.info(
                "hub: pushing %d revisions left pending by an earlier run: %s",
                len(pending),
                ", ".join(e["revision"] for e in pending),
            )
        for entry in pending:
            self._enqueue(entry)

    def _connect(self) -> HubRepo:
        repo = HubRepo(self.repo_id, RetryPolicy(**self.target["retry"]), self.branch_template)
        repo.stop = self._stop
        repo.pacer = CommitPacer(
            self.target.get("max_commits_per_hour", HUB_LIMIT_PER_HOUR), self.journal.last_push(), self._stop
        )
        return repo

    def submit(self, step: int, checkpoint_dir: Path) -> None:
        """Journal the push of checkpoint `step` (durable before returning), then queue it."""
        self._stage(self.revision(step), step, os.path.relpath(checkpoint_dir, self.output_dir))

    def requeue(self, step: int, main: bool = False) -> str:
        """Journal a push of local checkpoint `step` again (to its revision, or to main), made even where the
        revision looks complete: an audit found it wrong (parc.revisions repair=true). Returns the revision."""
        revision = MAIN if main else self.revision(step)
        self._stage(revision, step, checkpoint_path(Path("."), step).name, force=True)
        return revision

    def pending_steps(self) -> set:
        """Steps whose push is not confirmed yet: their local files must stay."""
        with self._lock:
            return {entry["step"] for entry in self._pending.values()}

    def close(self, final_step: Optional[int] = None) -> int:
        """Wait for the queued pushes (with a final step, `main` = that checkpoint comes last), at most
        `self.wait_s` seconds (hub.wait_at_end for a training run; None, until done, for parc.sync).
        Returns how many revisions are left pending: they stay in the journal, for
        `python -m parc.sync <output_dir>` or the next run's start()."""
        if final_step is not None:
            self._stage(MAIN, final_step, checkpoint_path(Path("."), final_step).name)
        if self.offline:
            log.info(
                "hub.mode=offline: %d revisions staged; push them with python -m parc.sync %s",
                len(self.pending_steps()),
                self.output_dir,
            )
            return len(self._pending)
        wait_s = self.wait_s
        if final_step is None and wait_s is not None:  # preempted: little time is left, the requeued run pushes
            wait_s = min(wait_s, PREEMPTED_WAIT_S)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(wait_s)
            if self._thread.is_alive():  # ends a wait at once; a request in flight finishes (or dies with us)
                self._stop.set()
                self._thread.join(30)
            self._thread = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None
        left = self.left()
        if self._failure is not None:
            raise ParcError(
                f"{self._failure} [not pushed: {', '.join(left) or 'none'}; they stay in "
                f"{self.journal.dir}: fix the cause, then run python -m parc.sync {self.output_dir}]"
            )
        if left:
            log.warning(
                "hub: %d revisions not published yet (%s), waited %.0f s (hub.wait_at_end); they stay in "
                "%s: python -m parc.sync %s or the next resume=auto start finishes them",
                len(left),
                ", ".join(left),
                wait_s or 0,
                self.journal.dir,
                self.output_dir,
            )
        return len(left)

    def left(self) -> List[str]:
        """The revisions not pushed yet, in push order."""
        with self._lock:
            return sorted(self._pending, key=lambda r: (r == MAIN, self._pending[r]["step"]))

    # --- internals ----------------------------------------------------------------------------------

    def _stage(self, revision: str, step: int, checkpoint: str, force: bool = False) -> None:
        # The id tells this push from an older one of the same revision still in the queue (a re-saved step).
        entry = {
            "revision": revision,
            "step": int(step),
            "checkpoint": checkpoint,
            "state": "pending",
            "id": f"{time.time_ns():x}",
            **({"force": True} if force else {}),
        }
        with self._lock:  # journal and pending map change together (see _settle)
            self.journal.record(entry)
            self._pending[revision] = entry
        if self._thread is not None and self._failure is None:  # offline, or closed: the journal has it
            self._enqueue(entry)

    def _enqueue(self, entry: dict) -> None:
        """Never drops: when the uploader is a whole queue behind, training waits here (and says so)."""
        try:
            self._queue.put_nowait(entry)
            return
        except queue.Full:
            pass
        log.warning(
            "hub: the upload queue is full (hub.queue_size=%d); training waits for the uploader (%s)",
            self._queue.maxsize,
            entry["revision"],
        )
        started = time.monotonic()
        self._queue.put(entry)
        log.warning("hub: waited %.1f s for the uploader", time.monotonic() - started)

    def _upload_loop(self) -> None:
        # Uploading is never urgent and training is: on Linux a thread has its own nice value (inherited by
        # the client's helper threads), so the scheduler gives training the core when both want it.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            if self._failure is not None or self._stop.is_set():
                continue  # keep draining so submit() never blocks; the journal keeps the entry pending
            try:
                self._push(entry)
            except PushInterrupted:
                log.info("hub: stopped waiting to push %s (it stays pending in the journal)", entry["revision"])
            except ParcError as exc:
                self._fail(exc)
            except Exception as exc:  # a bug here must not kill the thread silently and leave submit() blocked
                log.exception("hub uploader failed")
                self._fail(ParcError(f"hub uploader failed: {describe(exc, self.repo_id)}"))

    def _fail(self, exc: ParcError) -> None:
        self._failure = exc
        log.error(
            "hub: %s; this run pushes nothing more, the journal keeps every pending checkpoint "
            "(python -m parc.sync %s pushes them once the cause is fixed)",
            exc,
            self.output_dir,
        )

    def _push(self, entry: dict) -> None:
        from huggingface_hub import get_token

        directory = self.output_dir / entry["checkpoint"]
        revision = entry["revision"]
        if not directory.is_dir():
            log.warning(
                "hub: %s is gone from %s; its push to %s is abandoned", entry["checkpoint"], self.output_dir, revision
            )
            self._settle(entry, "abandoned")
            return
        secrets = {f"the local path {p}": p for p in self.target["local_paths"]}
        secrets["the Hugging Face token"] = get_token() or ""
        started = time.monotonic()
        extra = extra_files(self.target.get("extra_formats", []), directory, self.journal.dir / "extra")
        card = self._card(secrets) if revision == MAIN else None
        pushed = self.repo.push(
            revision,
            directory,
            self.target["push_train_state"],
            secrets,
            extra,
            force=bool(entry.get("force")),
            card=card,
        )
        self._settle(entry, "pushed")
        log.info(
            "hub: %s %s of %s (%.1f s)",
            "pushed" if pushed else "already complete:",
            revision,
            self.repo_id,
            time.monotonic() - started,
        )

    # --- the model card (parc.hub.card) ----------------------------------------------------------------

    def _card(self, secrets: Dict[str, str]) -> Dict[str, Path]:
        """main's README.md and loss curve, built from the run's files now (path in repo -> file). A card that
        cannot be built (a run directory parc.train did not write: no config.yaml) or that would publish a
        secret is left out with a warning: it never holds back the weights."""
        from parc.hub.card import card_files
        from parc.hub.repo import refuse_secrets

        try:
            files = card_files(self.output_dir, self.journal.dir / "card")
            refuse_secrets(self.output_dir, list(files), secrets, files)
            return files
        except Exception as exc:  # documentation only: main is pushed without it (parc.sync retries the card)
            log.warning("hub: main of %s goes without a model card: %s", self.repo_id, describe(exc, self.repo_id))
            return {}

    def refresh_card(self) -> Optional[bool]:
        """parc.sync: make main's model card what the run's files give now (new evaluations, say): one commit if
        it changed, none if not (True / False); None when main is not published yet or there is no card."""
        from huggingface_hub import get_token

        if not any(e["revision"] == MAIN and e["state"] == "pushed" for e in self.journal.entries()):
            return None
        secrets = {f"the local path {p}": p for p in self.target["local_paths"]}
        secrets["the Hugging Face token"] = get_token() or ""
        card = self._card(secrets)
        if not card:
            return None
        refuse_offline_env()
        with self.journal.lock():
            return self._connect().put_files(MAIN, card, f"{MAIN}: model card")

    def _settle(self, entry: dict, state: str) -> None:
        with self._lock:  # only the newest entry of a revision settles it: a newer one still has to be pushed
            if self._pending.get(entry["revision"], {}).get("id") != entry.get("id"):
                return
            del self._pending[entry["revision"]]
            self.journal.record({**entry, "state": state, **({"pushed_at": time.time()} if state == "pushed" else {})})


def extra_files(formats: List[str], checkpoint_dir: Path, work_dir: Path) -> Dict[str, Path]:
    """hub.extra_formats: the files published beside the checkpoint (path in repo -> local file), made
    by the uploader thread just before the push (deterministic, so a re-push is recognised as done)."""
    found = {}
    if "rwkv" in formats:
        from parc.hub.rwkvformat import RWKV_FILE, export_rwkv

        work_dir.mkdir(parents=True, exist_ok=True)
        found[RWKV_FILE] = export_rwkv(checkpoint_dir, work_dir / RWKV_FILE)
    return found


def resolve_hub_checkpoint(cfg, output_dir: Path, revision: Optional[str]) -> Optional[Path]:
    """Download a Hub checkpoint to resume from: `revision` of the run's own repo (resume=hub:<revision>, see
    parc.hub.reader.resume_spec), or with None (resume=auto and nothing local) the newest complete revision
    holding the training state. None: nothing to resume."""
    from parc.hub.reader import complete_revision, fetch_checkpoint, revisions_by_step

    hub = cfg.hub
    if hub.repo_id is None or hub.mode == "offline":
        if revision:
            raise ParcError(f"resume=hub:{revision} reads the Hub: set hub.repo_id=<org/name> and hub.mode=online")
        return None
    refuse_offline_env()
    repo = HubRepo(repo_id_for(cfg), RetryPolicy.from_config(hub), hub.branch)
    if not repo.exists():
        if revision:
            raise ParcError(f"resume=hub:{revision}: repository {repo.repo_id} does not exist on the Hub")
        return None
    if revision:
        return fetch_checkpoint(repo, complete_revision(repo, revision, f"resume=hub:{revision}"), output_dir)
    weights_only = None
    for step, name in reversed(revisions_by_step(repo)):
        remote = repo.inspect(name)
        if remote.manifest is None:
            log.warning("hub: skipping %s of %s: incomplete (%s)", name, repo.repo_id, remote.problem)
        elif remote.manifest.get("train_state"):
            log.info("hub: resuming from %s of %s", name, repo.repo_id)
            return fetch_checkpoint(repo, remote, output_dir)
        else:
            weights_only = weights_only or name
    if weights_only:
        raise ParcError(
            f"{repo.repo_id} holds checkpoints ({weights_only} the newest) but none with the training "
            "state (pushed with hub.push_train_state=false), so this run cannot continue them: "
            "set hub.repo_id to another repo, or resume=none to start over and replace them"
        )
    return None
