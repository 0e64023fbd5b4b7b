"""The one way Parc reads the Hub: the `hub:` grammar, opening a repo, its revisions sorted by step, and
fetching a complete revision into a directory, verified.

Grammar: `hub:<org/name>[@<revision>]` (`parse_hub_spec` -> HubSpec), for init_from=, parc.export and runs=
(study sources, parc.evaluate, parc.dynamics); each caller says what a missing revision means (main, an
error, every numbered revision). `resume=hub:<revision>` is the shorthand for a revision of the run's own
repo (hub.repo_id); `resume_spec` says what it means.

A fetch downloads into a fresh sibling directory `.<target>.download` (each try under the repo's retry
policy), checks every file, and only then moves it into place: a Parc revision against its
`parc_checkpoint.json` (size and sha256, store.integrity's check), any other revision (Pythia's `stepN`
branches) against what the Hub lists for each file at that commit: the sha256 of an LFS file's pointer, the
git blob id of a regular file. A file that does not match is a one-line ParcError naming it, and the target
is left as it was.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from parc.errors import ParcError
from parc.hub.repo import HubRepo, RemoteRevision, RetryPolicy, is_repo_id, offline_mode
from parc.store.checkpoint import MANIFEST, read_manifest

PREFIX = "hub:"
GRAMMAR = "hub:<org/name>[@<revision>]"
EXAMPLE = "hub:EleutherAI/pythia-160m@step1000"
READ_RETRY = RetryPolicy(initial_s=1.0, max_s=30.0, timeout_s=600.0)  # readers with no hub.* config of their own
# A branch, tag or commit: no whitespace, no '@' (the separator), none of git's forbidden characters, no "..".
_REVISION = re.compile(r"^(?!.*\.\.)[^\s@~^:?*\[\\]+$")
_HASH_CHUNK = 8 << 20


# --- the grammar --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubSpec:
    """`hub:<org/name>[@<revision>]` parsed: revision None when the spec names none."""

    repo_id: str
    revision: Optional[str] = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def is_hub_spec(text) -> bool:
    """Does `text` use the `hub:` grammar (as opposed to a local path)?"""
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_hub_spec(text: str, what: str = "") -> HubSpec:
    """`hub:<org/name>[@<revision>]` -> HubSpec; a malformed spec is a one-line ParcError (`what`: the argument
    it was given as, e.g. "init_from", to name it in the error)."""
    label = f"{what}={text}" if what else str(text)

    def refuse(why: str):
        raise ParcError(f"{label}: {why}; write {GRAMMAR}, e.g. {EXAMPLE}")

    if not is_hub_spec(text):
        refuse("a Hub spec starts with hub:")
    body = text[len(PREFIX) :]
    if any(c.isspace() for c in body):
        refuse("spaces are not allowed in it")
    repo_id, at, revision = body.partition("@")
    if not repo_id:
        refuse("it names no repository")
    if "/" not in repo_id:
        refuse(f"{repo_id!r} names no organisation")
    if not is_repo_id(repo_id):
        refuse(f"{repo_id!r} is not a repo id (org/name: letters, digits, '-', '_', '.')")
    if at and not revision:
        refuse("'@' is followed by no revision")
    if at and not _REVISION.match(revision):
        refuse(f"{revision!r} is not a revision name")
    return HubSpec(repo_id, revision or None)


def resume_spec(text: str, own_repo_id: Optional[str]) -> HubSpec:
    """What `resume=hub:<revision>` means: that revision of the run's own repo (`own_repo_id`, from hub.repo_id).
    The full form `hub:<org/name>@<revision>` is accepted when it names that same repo."""
    body = text[len(PREFIX) :] if is_hub_spec(text) else text
    if not own_repo_id:
        raise ParcError(f"resume={text} needs hub.repo_id=<org/name> to know which repository to read")
    if "@" in body:
        spec = parse_hub_spec(text, "resume")
        if spec.repo_id != own_repo_id:
            raise ParcError(
                f"resume={text}: resume continues this run's own repo {own_repo_id}; to start from "
                f"another repo's weights use init_from={text}"
            )
        return spec
    if not body:
        raise ParcError(
            f"resume={text}: name the revision, e.g. resume=hub:checkpoint-1000 "
            f"(python -m parc.revisions {own_repo_id} lists them)"
        )
    if not _REVISION.match(body):
        raise ParcError(
            f"resume={text}: {body!r} is not a revision name; write resume=hub:<revision>, "
            "e.g. resume=hub:checkpoint-1000"
        )
    return HubSpec(own_repo_id, body)


# --- opening and listing ------------------------------------------------------------------------------


def refuse_offline(what: str) -> None:
    """A one-line error instead of retrying a Hub that HF_HUB_OFFLINE=1 forbids the client to reach."""
    if offline_mode():
        raise ParcError(f"{what} reads the Hub, but HF_HUB_OFFLINE=1 is set: unset it")


def open_repo(repo_id: str, branch=None, retry: RetryPolicy = READ_RETRY, what: Optional[str] = None) -> HubRepo:
    """A repo to read, checked to exist; its branch template as given (`hub.branch`), else guessed from its
    branches (`stepN` for a Pythia suite). A missing repo or a bad template is a one-line ParcError."""
    from parc.hub.branches import BranchTemplate, guess

    what = what or f"{PREFIX}{repo_id}"
    if not is_repo_id(repo_id):
        raise ParcError(f"{what}: {repo_id!r} is not a repo id: give org/name")
    template = BranchTemplate(branch) if isinstance(branch, str) else branch  # a bad one fails before any request
    refuse_offline(what)
    repo = HubRepo(repo_id, retry)
    if not repo.exists():
        raise ParcError(
            f"{what}: repository {repo_id} not found on the Hub (check the name, and HF_TOKEN if it is private)"
        )
    repo.template = template or guess(repo.branches())
    return repo


def revisions_by_step(repo: HubRepo, branches: Optional[Iterable[str]] = None) -> List[Tuple[int, str]]:
    """(step, branch) of every branch that follows the repo's template, sorted by step (`step10` after
    `step9`), never as text."""
    return sorted(repo.template.revisions(repo.branches() if branches is None else branches).items())


def complete_revision(repo: HubRepo, revision: str, what: str) -> RemoteRevision:
    """`revision` of a Parc repo, checked to exist and be complete; else a one-line ParcError (`what`: the
    argument that named it)."""
    if revision not in repo.branches():
        raise ParcError(
            f"{what}: {revision} is not a revision of {repo.repo_id}; python -m parc.revisions "
            f"{repo.repo_id} lists them"
        )
    remote = repo.inspect(revision)
    if remote.manifest is None:
        raise ParcError(
            f"{what}: revision {revision} of {repo.repo_id} is incomplete ({remote.problem}); pick a "
            f"complete one: python -m parc.revisions {repo.repo_id}"
        )
    return remote


# --- fetching -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What one file must be: its size, and its sha256 (a manifest's or an LFS pointer's) or git blob id."""

    size: int
    sha256: Optional[str] = None
    blob_id: Optional[str] = None
    source: str = "manifest"  # which listing said so: "manifest" or "Hub"


def git_blob_id(path: Path) -> str:
    """The id git gives a regular file's content (what the Hub lists as blobId)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_problem(path: Path, rel: str, expected: Expected) -> Optional[str]:
    """None if the downloaded file is what the listing says; else what is wrong, naming `rel`."""
    from parc.store import integrity
    from parc.store.fileio import sha256_file

    if expected.source == "manifest":  # a Parc revision: the same check as a local checkpoint's
        return integrity.file_problem(path, rel, {"size": expected.size, "sha256": expected.sha256}, True)
    problem = integrity.file_problem(path, rel, {"size": expected.size}, False)
    if problem:
        return problem
    if expected.sha256 is not None and sha256_file(path) != expected.sha256:
        return f"{rel} does not match the LFS sha256 the Hub lists for it"
    if expected.sha256 is None and expected.blob_id is not None and git_blob_id(path) != expected.blob_id:
        return f"{rel} does not match the git blob id the Hub lists for it"
    return None


def manifest_files(manifest: dict, exclude: Iterable[str] = ()) -> Dict[str, Expected]:
    """The files a Parc manifest lists (less those matching `exclude`), as Expected."""
    from fnmatch import fnmatch

    return {
        rel: Expected(int(meta["size"]), meta.get("sha256"))
        for rel, meta in manifest["files"].items()
        if not any(fnmatch(rel, pattern) for pattern in exclude)
    }


def first_problem(directory: Path, expected: Dict[str, Expected]) -> Optional[str]:
    for rel, meta in sorted(expected.items()):
        problem = file_problem(Path(directory) / rel, rel, meta)
        if problem:
            return problem
    return None


def fetch_files(
    repo: HubRepo, commit: str, expected: Dict[str, Expected], target: Path, label: str, manifest: Optional[dict] = None
) -> Path:
    """Download `expected` (path in repo -> what it must be) of `commit` into `target`, verified; with a Parc
    `manifest`, its parc_checkpoint.json too (checked to be that manifest). Atomic: a verified directory
    replaces `target`, or a ParcError names the first file that did not match and `target` is untouched."""
    from huggingface_hub import snapshot_download

    target = Path(target)
    wanted = [*expected, *([MANIFEST] if manifest is not None else [])]
    temp = target.parent / f".{target.name}.download"

    def fetch():  # a fresh folder each try: the client would otherwise settle for what a failed try left
        shutil.rmtree(temp, ignore_errors=True)
        snapshot_download(
            repo.repo_id, revision=commit, local_dir=str(temp), allow_patterns=[glob.escape(path) for path in wanted]
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.attempt(f"download {label}", fetch)
        shutil.rmtree(temp / ".cache", ignore_errors=True)  # the client's bookkeeping, not part of the revision
        problem = first_problem(temp, expected)
        if problem is None and manifest is not None and read_manifest(temp) != manifest:
            problem = f"{MANIFEST} changed during the download"
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if problem:
        shutil.rmtree(temp, ignore_errors=True)
        raise ParcError(f"{label} of {repo.repo_id} is corrupt: {problem}; nothing was written to {target}")
    if target.exists():
        shutil.rmtree(target)
    os.replace(temp, target)
    return target


def fetch_checkpoint(repo: HubRepo, remote: RemoteRevision, output_dir: Path) -> Path:
    """A complete Parc revision as `output_dir/checkpoint-N` (kept if already there and verified)."""
    from parc.store.checkpoint import checkpoint_path, is_complete
    from parc.store.integrity import verify

    final = checkpoint_path(output_dir, int(remote.manifest["step"]))
    if is_complete(final) and verify(final).ok and read_manifest(final) == remote.manifest:
        return final
    return fetch_files(
        repo, remote.commit, manifest_files(remote.manifest), final, f"revision {remote.name}", remote.manifest
    )


def fetch_revision(repo: HubRepo, revision: str, target: Path, exclude: Iterable[str] = ()) -> Path:
    """Any revision (branch or commit) into `target`, verified: against its manifest when Parc wrote it (then
    it must be complete), else against the LFS sha256 / git blob id the Hub lists. `exclude`: glob patterns
    of files to leave out (e.g. the training state). Kept if `target` already holds it, verified."""
    from fnmatch import fnmatch

    listed = repo.files(revision)
    if MANIFEST in listed.files:
        remote = repo.inspect(revision, listed)
        if remote.manifest is None:
            raise ParcError(f"{PREFIX}{repo.repo_id}@{revision} is incomplete ({remote.problem})")
        expected, manifest = manifest_files(remote.manifest, exclude), remote.manifest
    else:
        expected = {
            rel: Expected(meta.size, meta.sha256, meta.blob_id, "Hub")
            for rel, meta in listed.files.items()
            if rel != ".gitattributes" and not any(fnmatch(rel, pattern) for pattern in exclude)
        }
        manifest = None
    target = Path(target)
    if target.is_dir() and first_problem(target, expected) is None:
        return target
    return fetch_files(repo, listed.commit, expected, target, f"revision {revision}", manifest)


def cache_dir_for(repo_id: str, commit: str) -> Path:
    """Where a kept revision goes when no directory is given: beside the client's own cache."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / "parc-revisions" / repo_id.replace("/", "--") / commit
