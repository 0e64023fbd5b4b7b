"""One Hub model repo seen through the real `huggingface_hub` client: push a checkpoint directory to a
`checkpoint-N` branch, tell whether a revision is complete, list a revision's files, read one file, and retry
what is transient. Fetching a whole revision, verified, is parc.hub.reader's.

Each revision is ONE commit holding the files and `parc_checkpoint.json` together; the Hub applies a commit
atomically, so a revision is complete or absent. A revision is *complete* when its `parc_checkpoint.json`
is present and every file it lists is on the branch with the listed size. Pushes are idempotent: a revision already complete with the same
manifest is left alone, and a re-push replaces whatever a crashed push left on the branch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from parc.config import cell_name
from parc.errors import ParcError
from parc.hub.branches import DEFAULT as DEFAULT_BRANCH
from parc.hub.branches import BranchTemplate
from parc.store.checkpoint import MANIFEST, TRAINER_STATE, has_train_state, weights_only
from parc.store.fileio import sha256_file

log = logging.getLogger("parc.hub.publisher")

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
SCANNED_WHOLE = 64 << 20  # files up to this size are searched for secrets entirely; larger ones only their head
SCANNED_HEAD = 1 << 20  # (a safetensors header, where free-form metadata lives)


# --- failures -----------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and its causes: the client wraps a dropped connection in e.g. LocalEntryNotFoundError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transport_errors() -> tuple:
    """Connection-level failures of whichever HTTP stack this huggingface_hub version uses."""
    import importlib

    types = [ConnectionError, TimeoutError]
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        types += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(types)


def offline_mode() -> bool:
    """HF_HUB_OFFLINE=1: the client refuses every request (and its refusal looks like a dropped connection)."""
    from huggingface_hub import constants

    return constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else bool(constants.HF_HUB_OFFLINE)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the connection failed, the Hub is overloaded (5xx) or rate-limits us (429)."""
    transport = _transport_errors()
    for link in _chain(exc):
        status = _status(link)
        if status is not None:
            return status in (408, 425, 429) or status >= 500
        if isinstance(link, transport):
            return True
    return False


def describe(exc: BaseException, repo_id: str) -> str:
    """One line naming the cause, and the fix where there is one; never the token."""
    status = next((s for s in map(_status, _chain(exc)) if s is not None), None)
    if status == 401:
        return (
            f"the Hub refused our credentials for {repo_id} (HTTP 401): set HF_TOKEN or run `hf auth login` "
            "with a token that can write"
        )
    if status == 403:
        return f"no write access to {repo_id} (HTTP 403): use a token with write access to that namespace"
    kinds = {type(link).__name__ for link in _chain(exc)}
    if status == 404 and "EntryNotFoundError" in kinds:
        return f"a file is not in {repo_id} (HTTP 404)"
    if status == 404 and "RevisionNotFoundError" in kinds:
        return f"no such revision in {repo_id} (HTTP 404)"
    if status == 404:
        return f"repository {repo_id} not found (HTTP 404): check hub.repo_id and that the token can see it"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}" + (f" (HTTP {status})" if status else "")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures, for at most `timeout_s`. A rate limit (429)
    is waited out as the server says (`Retry-After` / `RateLimit`, possibly tens of minutes); that wait is
    the limit working, not the Hub failing, so it does not count against `timeout_s`."""

    initial_s: float = 1.0
    max_s: float = 60.0
    timeout_s: float = 3600.0

    @classmethod
    def from_config(cls, hub_cfg) -> "RetryPolicy":
        return cls(float(hub_cfg.retry_initial_s), float(hub_cfg.retry_max_s), float(hub_cfg.retry_timeout_s))

    def call(self, what: str, repo_id: str, fn: Callable, /, *args, **kwargs):
        return self.call_until(None, what, repo_id, fn, *args, **kwargs)

    def call_until(self, stop, what: str, repo_id: str, fn: Callable, /, *args, **kwargs):
        """`call`, whose waits end with PushInterrupted as soon as the event `stop` is set."""
        from parc.hub.pacing import PushInterrupted, rate_limit_wait, wait_or_stop

        # A private generator: the uploader thread must not advance the global `random` stream, which the
        # trainer saves and restores for bit-identical resumes.
        jitter = random.Random()
        deadline = time.monotonic() + self.timeout_s
        delay = self.initial_s
        while True:
            try:
                return fn(*args, **kwargs)
            except PushInterrupted:  # the pacer's wait was cut short (the run is closing): pending, not failed
                raise
            except Exception as exc:  # classified below: transient ones are retried, the rest end here
                cause = describe(exc, repo_id)
                if not is_transient(exc):
                    raise ParcError(f"{what}: {cause}") from None
                told = rate_limit_wait(exc)
                limited = told > 0 and any(_status(link) == 429 for link in _chain(exc))
                wait = max(delay * jitter.uniform(1.0, 1.25), told)
                if limited:
                    deadline += wait
                    log.warning(
                        "%s: the Hub's commit limit (HTTP 429); waiting %.0f s as it asks (training "
                        "continues; queued revisions stay in the journal)",
                        what,
                        wait,
                    )
                elif time.monotonic() + wait > deadline:
                    raise ParcError(f"{what}: still failing after {self.timeout_s:.0f} s ({cause})") from None
                else:
                    log.warning("%s: %s; retrying in %.1f s", what, cause, wait)
                wait_or_stop(stop, wait)
                delay = min(delay * 2, self.max_s)


# --- what gets published ------------------------------------------------------------------------------


def is_repo_id(text: str) -> bool:
    """`org/name` as the Hub allows it (letters, digits, '-', '_', '.'; no '--' or '..')."""
    return bool(REPO_ID.match(text)) and "--" not in text and ".." not in text


def repo_id_for(cfg) -> str:
    """hub.repo_id as given ("org/name"), or for a bare namespace "org": org/<run_name>-<arch>-seed<S>-shard<K>."""
    repo_id = str(cfg.hub.repo_id)
    if "/" not in repo_id:
        repo_id = f"{repo_id}/{cfg.run_name}-{cell_name(cfg.arch.name, cfg.seed, cfg.data.shard)}"
    if not is_repo_id(repo_id):
        raise ParcError(
            f"hub.repo_id={cfg.hub.repo_id!r} is not a valid repo id: use org/name (letters, digits, "
            "'-', '_', '.'; at most 96 characters each), or just org to derive the name"
        )
    return repo_id


def published_manifest(
    checkpoint_dir: Path, with_train_state: bool, extra: Optional[Dict[str, Path]] = None
) -> Tuple[dict, bytes]:
    """The manifest a revision carries: the local one, byte for byte, unless the training state stays home
    (then it lists the weights only and says `"train_state": false`, as a pruned local checkpoint does) or
    extra files are published beside the checkpoint (hub.extra_formats: they are listed too)."""
    raw = (Path(checkpoint_dir) / MANIFEST).read_bytes()
    manifest = json.loads(raw)
    if with_train_state and has_train_state(checkpoint_dir) and manifest.get("train_state", True) and not extra:
        return manifest, raw
    if not (with_train_state and has_train_state(checkpoint_dir) and manifest.get("train_state", True)):
        manifest = weights_only(manifest)
    if extra:
        listed = {rel: {"size": path.stat().st_size, "sha256": sha256_file(path)} for rel, path in extra.items()}
        manifest = {**manifest, "files": {**manifest["files"], **listed}}
    return manifest, json.dumps(manifest, indent=1, sort_keys=True).encode()


def refuse_secrets(
    checkpoint_dir: Path, paths: Iterable[str], secrets: Dict[str, str], located: Optional[Dict[str, Path]] = None
) -> None:
    """Refuse to publish a file holding the HF token or a local absolute path (label -> string to find).
    `located`: where a path lives when not in checkpoint_dir (extra formats)."""
    needles = {label: text.encode() for label, text in secrets.items() if text and len(text) > 1}
    for rel in paths:
        with open((located or {}).get(rel, Path(checkpoint_dir) / rel), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size if size <= SCANNED_WHOLE else SCANNED_HEAD)
        for label, needle in needles.items():
            if needle in data:
                raise ParcError(
                    f"refusing to push {Path(checkpoint_dir).name}/{rel}: it contains {label}; "
                    "a published checkpoint must hold no secrets or local paths"
                )


def verify_files_at(located: Dict[str, Path], manifest: dict, check_sha: bool) -> Optional[str]:
    """None if every file the manifest lists is at its local path (path in repo -> local file) with its size
    (and sha256); else what is wrong."""
    for rel, meta in sorted(manifest["files"].items()):
        path = located[rel]
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{rel} has {path.stat().st_size} bytes, the manifest says {meta['size']}"
        if check_sha and sha256_file(path) != meta["sha256"]:
            return f"{rel} does not match the sha256 in the manifest"
    return None


def same_file(sibling, path: Path) -> bool:
    """Does the Hub's file (a repo_info sibling with files metadata) hold exactly the local file's bytes?
    LFS files by their sha256, regular ones by their git blob id."""
    import hashlib

    if sibling is None:
        return False
    lfs = getattr(sibling, "lfs", None)
    if lfs is not None and getattr(lfs, "sha256", None):
        return lfs.sha256 == sha256_file(path)
    data = path.read_bytes()
    return getattr(sibling, "blob_id", None) == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --- the repo -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a revision as the Hub lists it."""

    size: int
    sha256: Optional[str]  # an LFS file's sha256 (from its pointer); None for a regular git file
    blob_id: Optional[str]  # the git blob id (of the pointer, for an LFS file)


@dataclass(frozen=True)
class RevisionFiles:
    """A revision's files at one commit (what `HubRepo.files` read)."""

    commit: str
    files: Dict[str, RemoteFile]


@dataclass(frozen=True)
class RemoteRevision:
    name: str
    commit: str
    manifest: Optional[dict]  # None: incomplete
    problem: Optional[str]  # why it is incomplete


class HubRepo:
    """Pushes and pulls checkpoint revisions of one repo; every call goes through the retry policy."""

    def __init__(self, repo_id: str, retry: RetryPolicy = RetryPolicy(), branch: str = DEFAULT_BRANCH):
        from huggingface_hub import HfApi

        self.repo_id, self.retry = repo_id, retry
        self.template = branch if isinstance(branch, BranchTemplate) else BranchTemplate(branch)
        self.api = HfApi()
        self.pacer = None  # parc.hub.pacing.CommitPacer when commits are budgeted (hub.max_commits_per_hour)
        self.stop = None  # a threading.Event that cuts every wait short (the publisher is closing)

    def _call(self, what: str, fn: Callable, /, *args, **kwargs):
        return self.retry.call_until(self.stop, what, self.repo_id, fn, *args, **kwargs)

    def attempt(self, what: str, fn: Callable, /, *args, **kwargs):
        """Run `fn` (a whole download, say) under this repo's retry policy: retried while it fails transiently."""
        return self._call(what, fn, *args, **kwargs)

    def revision(self, step: int) -> str:
        return self.template.name(step)

    def ensure(self, private: bool) -> None:
        self._call(f"create repo {self.repo_id}", self.api.create_repo, self.repo_id, private=private, exist_ok=True)

    def exists(self) -> bool:
        from huggingface_hub.errors import RevisionNotFoundError

        def look_up() -> bool:
            try:
                return self.api.repo_exists(self.repo_id)
            except RevisionNotFoundError:  # the repo is there, its default branch is not
                return True

        return self._call(f"look up {self.repo_id}", look_up)

    def branches(self) -> Dict[str, str]:
        """Every branch -> its head commit."""
        refs = self._call(f"list revisions of {self.repo_id}", self.api.list_repo_refs, self.repo_id)
        return {ref.name: ref.target_commit for ref in refs.branches}

    def revisions(self) -> Dict[int, str]:
        """step -> checkpoint branch, for the branches that follow the template (hub.branch)."""
        return self.template.revisions(self.branches())

    def files(self, revision: str) -> RevisionFiles:
        """Every file of `revision` with its size, LFS sha256 and git blob id, read at one commit."""
        info = self._call(f"read {revision}", self.api.repo_info, self.repo_id, revision=revision, files_metadata=True)
        return RevisionFiles(
            info.sha,
            {s.rfilename: RemoteFile(s.size, s.lfs.sha256 if s.lfs else None, s.blob_id) for s in info.siblings or []},
        )

    def download_file(self, commit: str, path: str, local_dir: Optional[Path] = None) -> Optional[Path]:
        """One file of one commit: into `local_dir` (at its path in the repo) or the client's cache; None when
        the commit does not have it."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        def get():
            try:
                return hf_hub_download(
                    self.repo_id, path, revision=commit, local_dir=None if local_dir is None else str(local_dir)
                )
            except EntryNotFoundError:
                return None

        local = self._call(f"read {path}", get)
        return None if local is None else Path(local)

    def read_json(self, commit: str, path: str, missing_ok: bool = False):
        """A JSON file of one commit; None when it is missing and `missing_ok`."""
        local = self.download_file(commit, path)
        if local is None:
            if missing_ok:
                return None
            raise ParcError(f"{path} is not in commit {commit[:12]} of {self.repo_id}")
        return json.loads(local.read_text())

    def inspect(self, revision: str, listed: Optional[RevisionFiles] = None) -> RemoteRevision:
        """Is `revision` complete? Reads one commit (so a push in progress cannot mix two states)."""
        listed = listed or self.files(revision)
        sizes = {path: meta.size for path, meta in listed.files.items()}
        if MANIFEST not in sizes:
            return RemoteRevision(revision, listed.commit, None, f"no {MANIFEST}")
        try:
            manifest = self.read_json(listed.commit, MANIFEST)
            wrong = [p for p, meta in manifest["files"].items() if sizes.get(p) != meta.get("size")]
        except (ValueError, KeyError, TypeError, AttributeError):
            return RemoteRevision(revision, listed.commit, None, f"{MANIFEST} is not a valid manifest")
        if wrong:
            return RemoteRevision(revision, listed.commit, None, f"{len(wrong)} listed files missing, e.g. {wrong[0]}")
        return RemoteRevision(revision, listed.commit, manifest, None)

    def push(
        self,
        revision: str,
        checkpoint_dir: Path,
        with_train_state: bool,
        secrets: Dict[str, str],
        extra: Optional[Dict[str, Path]] = None,
        force: bool = False,
        card: Optional[Dict[str, Path]] = None,
    ) -> bool:
        """Make `revision` hold exactly this checkpoint, in ONE commit (the Hub applies a commit atomically, so
        the revision is complete or absent, and the commit limit is spent once). `extra`: more files to
        publish beside it (path in repo -> local file), listed in the published manifest. `card`: the model
        card's files (main's README.md, its image), in the same commit but not in the manifest: they describe
        the repo, not the checkpoint. False if the revision already held exactly this (by its manifest; its
        card then updated if it changed; `force`: push anyway, a repair)."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        manifest, manifest_bytes = published_manifest(checkpoint_dir, with_train_state, extra)
        local = {rel: Path(checkpoint_dir) / rel for rel in manifest["files"]}
        local.update(extra or {})
        problem = verify_files_at(local, manifest, check_sha=False)
        if problem:
            raise ParcError(f"local {Path(checkpoint_dir).name} is damaged ({problem}); it cannot be published")
        refuse_secrets(
            checkpoint_dir, [*manifest["files"], MANIFEST, *(card or {})], secrets, {**local, **(card or {})}
        )
        card = {rel: path for rel, path in (card or {}).items() if rel not in manifest["files"]}
        if revision in self.branches():
            if not force and self.inspect(revision).manifest == manifest:
                self.put_files(revision, card, f"{revision}: model card")
                return False
        else:
            self._call(
                f"create branch {revision}", self.api.create_branch, self.repo_id, branch=revision, exist_ok=True
            )
        # Whatever the branch held before (its starting point, an older run's files) goes in the same
        # commit, so the branch ends with exactly this checkpoint.
        before = self._call(f"list {revision}", self.api.list_repo_files, self.repo_id, revision=revision)
        operations = [
            CommitOperationDelete(path)
            for path in before
            if path not in manifest["files"] and path not in (MANIFEST, ".gitattributes", *card)
        ]
        operations += [CommitOperationAdd(path, str(local[path])) for path in sorted(manifest["files"])]
        operations += [CommitOperationAdd(path, str(card[path])) for path in sorted(card)]
        operations.append(CommitOperationAdd(MANIFEST, manifest_bytes))
        contents = "weights and training state" if manifest.get("train_state") else "weights"
        self._call(f"commit {revision}", self._commit, operations, revision, f"{revision}: {contents}")
        remote = self.inspect(revision)
        if remote.manifest != manifest:
            raise ParcError(
                f"{revision} of {self.repo_id} is not complete right after pushing it "
                f"({remote.problem or 'another manifest'}): is another process pushing to this repo?"
            )
        return True

    def put_files(self, revision: str, files: Dict[str, Path], message: str) -> bool:
        """Commit those of `files` (path in repo -> local file) that `revision` does not hold byte for byte, in
        one commit; nothing when all are there (a refreshed model card that did not change). True if it committed."""
        from huggingface_hub import CommitOperationAdd

        if not files:
            return False
        info = self._call(f"read {revision}", self.api.repo_info, self.repo_id, revision=revision, files_metadata=True)
        remote = {s.rfilename: s for s in info.siblings or []}
        changed = sorted(rel for rel, path in files.items() if not same_file(remote.get(rel), Path(path)))
        if not changed:
            return False
        operations = [CommitOperationAdd(rel, str(files[rel])) for rel in changed]
        self._call(f"commit {revision}", self._commit, operations, revision, message)
        return True

    def _commit(self, operations: list, revision: str, message: str) -> None:
        """One commit; the pacer (hub.max_commits_per_hour) is asked first, on every try."""
        if self.pacer is not None:
            self.pacer.before_commit()
        self.api.create_commit(self.repo_id, operations, commit_message=message, revision=revision)
        if self.pacer is not None:
            self.pacer.after_commit()


def schedule_of(repo: HubRepo, remote: RemoteRevision) -> Optional[List[int]]:
    """The run's checkpoint steps: from the manifest if it says, else from the config in its trainer state."""
    if remote.manifest.get("schedule"):
        return sorted(int(s) for s in remote.manifest["schedule"])
    if TRAINER_STATE not in remote.manifest["files"]:
        return None
    config = repo.read_json(remote.commit, TRAINER_STATE).get("config")
    try:
        from omegaconf import OmegaConf

        from parc.store.steps import checkpoint_steps

        return checkpoint_steps(OmegaConf.create(config["checkpoint"]), int(config["trainer"]["max_steps"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def survey(repo: HubRepo) -> dict:
    """Every checkpoint revision sorted by step, complete or not, the step `main` holds, and the scheduled
    steps that have no revision (up to the newest one, or to the end when the run has finished)."""
    from concurrent.futures import ThreadPoolExecutor

    branches = repo.branches()
    named = sorted(repo.revisions().items())
    with ThreadPoolExecutor(max_workers=8) as pool:  # two requests per revision; hundreds of revisions
        remotes = list(pool.map(repo.inspect, [name for _, name in named]))
    rows = [
        {
            "revision": r.name,
            "step": step,
            "complete": r.manifest is not None,
            "problem": r.problem,
            "tokens": (r.manifest or {}).get("tokens"),
            "train_state": (r.manifest or {}).get("train_state"),
            "commit": r.commit,
        }
        for (step, _), r in zip(named, remotes)
    ]
    complete = [r for r in remotes if r.manifest is not None]
    main = repo.inspect("main") if "main" in branches else None
    main_step = main.manifest.get("step") if main is not None and main.manifest else None
    schedule = schedule_of(repo, complete[-1]) if complete else None
    missing = None
    if schedule is not None:
        horizon = max(schedule) if main_step == max(schedule) else max(step for step, _ in named)
        present = {step for step, _ in named}
        missing = [s for s in schedule if s <= horizon and s not in present]
    return {
        "repo_id": repo.repo_id,
        "main": main_step,
        "revisions": rows,
        "incomplete": [row["step"] for row in rows if not row["complete"]],
        "missing": missing,
        "schedule_known": schedule is not None,
    }
