"""Is a checkpoint whole? Every file its completion manifest lists is checked before a run trusts it.

`parc_checkpoint.json` (written last by parc.store.checkpoint.save) lists each file with its size and sha256.
`verify(dir)` checks that each listed file is there, readable, of the listed size and (check_sha=True,
streamed) of the listed sha256: a truncated copy, a bit flip, a file replaced or deleted since the save is
found and named. Hashing a Parc-size checkpoint (160M parameters: 0.65 GB of weights + 1.3 GB of optimizer
state) costs about as long as reading it once; BENCHMARKS.md has the measured number.

`newest_verified` is what resume=auto uses: the newest checkpoint with training state that verifies,
saying on stderr which newer one it skipped and why. `require_verified` is for a checkpoint the user named:
a failure is a one-line error naming the file.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST, TRAINER_STATE, has_train_state, read_manifest, step_of
from parc.store.fileio import HASH_CHUNK

log = logging.getLogger("parc.store.integrity")

OK, DAMAGED, INCOMPLETE = "ok", "damaged", "incomplete"


@dataclass
class Verdict:
    """What `verify` found in one checkpoint directory."""

    path: str
    step: Optional[int]
    status: str  # ok | damaged (a listed file is wrong) | incomplete (no valid manifest: an interrupted save)
    problem: Optional[str] = None  # the first thing wrong, naming the file
    train_state: bool = False  # the manifest lists a training state (it can be resumed from)
    files: int = 0
    bytes: int = 0  # the listed files' sizes, as the manifest gives them
    sha256_checked: bool = False
    manifest: Optional[Dict] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == OK


def checked_manifest(path: Path) -> tuple[Optional[dict], Optional[str]]:
    """(manifest, None) or (None, why it is not a valid completion manifest of this directory)."""
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        return None, f"no {MANIFEST} (an interrupted save or copy)"
    except (OSError, ValueError) as exc:
        return None, f"{MANIFEST} cannot be read ({type(exc).__name__}: {exc})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None, f"{MANIFEST} is not a completion manifest (no file list)"
    if manifest.get("step") != step_of(path):
        return None, f"{MANIFEST} is for step {manifest.get('step')!r}, not this directory's"
    return manifest, None


def file_problem(path: Path, rel: str, meta: dict, check_sha: bool) -> Optional[str]:
    """None if `path` matches its manifest entry; else what is wrong with it, naming `rel`."""
    expected = meta.get("size")
    try:
        size = path.stat().st_size
        if not path.is_file():
            return f"{rel} is not a regular file"
        if size != expected:
            if isinstance(expected, int) and size < expected:
                return f"{rel} is truncated: {size} of {expected} bytes"
            return f"{rel} has {size} bytes, the manifest says {expected}"
        if check_sha:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(HASH_CHUNK), b""):
                    digest.update(block)
            if digest.hexdigest() != meta.get("sha256"):
                return f"{rel} does not match its sha256 in the manifest (corrupted or changed since it was saved)"
    except FileNotFoundError:
        return f"{rel} is missing"
    except OSError as exc:
        return f"{rel} cannot be read ({exc.strerror or type(exc).__name__})"
    return None


def verify(path: Path, check_sha: bool = True) -> Verdict:
    """Check every file the manifest of checkpoint `path` lists: size always, sha256 when check_sha."""
    path = Path(path)
    verdict = Verdict(path=str(path), step=step_of(path), status=INCOMPLETE, sha256_checked=check_sha)
    manifest, problem = checked_manifest(path)
    if manifest is None:
        verdict.problem = problem
        return verdict
    files = manifest["files"]
    verdict.manifest = manifest
    verdict.files = len(files)
    verdict.bytes = sum(int(meta.get("size") or 0) for meta in files.values())
    verdict.train_state = bool(manifest.get("train_state", True)) and TRAINER_STATE in files
    for rel, meta in sorted(files.items()):
        problem = file_problem(path / rel, rel, meta, check_sha)
        if problem:
            verdict.status, verdict.problem = DAMAGED, problem
            return verdict
    verdict.status = OK
    return verdict


def checkpoint_dirs(output_dir: Path) -> List[Path]:
    """Every `checkpoint-N` directory of a run, by step (complete or not)."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of)


def newest_verified(output_dir: Path, check_sha: bool = True) -> Optional[Path]:
    """resume=auto: the newest checkpoint with training state whose files all verify; damaged newer ones are
    skipped with a warning naming the file and the fault (incomplete ones, interrupted saves, silently).
    None when there is none; when every one is damaged, an error rather than a silent fresh start."""
    damaged = []
    for path in reversed(checkpoint_dirs(output_dir)):
        if not has_train_state(path):
            continue
        verdict = verify(path, check_sha)
        if verdict.ok and verdict.train_state:
            return path
        if verdict.status == DAMAGED:
            damaged.append(path.name)
            log.warning(
                "parc: skipping %s: %s; trying an older checkpoint (python -m parc.verify %s lists all)",
                path.name,
                verdict.problem,
                output_dir,
            )
    if damaged:
        raise ParcError(
            f"every checkpoint of {output_dir} with training state is damaged ({', '.join(damaged)}): "
            f"python -m parc.verify {output_dir} shows what is wrong; restore them, or start over with "
            "resume=none overwrite=true"
        )
    return None


def require_verified(path: Path, check_sha: bool = True) -> Verdict:
    """A checkpoint the user named: every listed file must verify, else a one-line error naming the file."""
    verdict = verify(path, check_sha)
    if verdict.status == DAMAGED:
        raise ParcError(
            f"checkpoint {path} is damaged: {verdict.problem}; pick another one (python -m parc.verify "
            f"{Path(path).parent} lists them), or resume=auto to use the newest intact one"
        )
    if verdict.status == INCOMPLETE:
        raise ParcError(
            f"checkpoint {path} is incomplete: {verdict.problem}; pick another one "
            f"(python -m parc.verify {Path(path).parent} lists them)"
        )
    return verdict


def runs_under(root: Path) -> List[Path]:
    """The run directories to check: `root` itself if it holds checkpoints, else every directory below it
    that does (a grid root, or any tree of runs)."""
    if checkpoint_dirs(root):
        return [root]
    runs = {p.parent for p in root.rglob("checkpoint-*") if p.is_dir() and step_of(p) is not None}
    return sorted(runs)


def check_tree(path: Path, check_sha: bool = True) -> Dict[str, List[Verdict]]:
    """run directory -> the verdict of each of its checkpoints, by step."""
    path = Path(path)
    if not path.exists():
        raise ParcError(f"{path} does not exist: give a run's output_dir, a grid root or a checkpoint directory")
    if step_of(path) is not None and path.is_dir():
        return {str(path.parent): [verify(path, check_sha)]}
    runs = runs_under(path)
    if not runs:
        raise ParcError(f"no checkpoint-N directories under {path}: give a run's output_dir or a grid root")
    return {str(run): [verify(p, check_sha) for p in checkpoint_dirs(run)] for run in runs}
