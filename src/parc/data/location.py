"""Where a run's prepared stream lies on this machine, so its readers find it from any directory.

`parc.train` writes `<output_dir>/data_stream.json` beside config.yaml: the stream's absolute path and its
fingerprint (the manifest's content_sha256). config.yaml itself stays portable (it is published and holds
only the data directory's name). Every reader of a run's training data (held-out loss, memorization,
n-grams, `parc.batch run=`, `parc.study`) asks `recorded_stream_dir(run)` first: the recorded path when it
still holds the same stream, a one-line error when it holds another, None when the path (or the record) is
gone — only then may a reader fall back to looking beside the runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from parc.errors import ParcError
from parc.store.fileio import atomic_write_json

STREAM_RECORD = "data_stream.json"


def record_stream(output_dir: Path, stream) -> Path:
    """Write where `stream` (a PackedStream or MegatronStream) lies and what it holds; returns the record."""
    path = Path(output_dir) / STREAM_RECORD
    atomic_write_json(path, {"dir": str(Path(stream.dir).resolve()), "content_sha256": stream.content_hash})
    return path


def read_record(run_dir: Path) -> Optional[dict]:
    path = Path(run_dir) / STREAM_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ParcError(f"{path} is unreadable ({exc}): delete it to look for the stream beside the runs") from None
    if not isinstance(record, dict) or not {"dir", "content_sha256"} <= set(record):
        raise ParcError(
            f"{path} is not a stream record (dir, content_sha256): delete it to look for the stream beside the runs"
        )
    return record


def manifest_hash(directory: Path) -> Optional[str]:
    """content_sha256 of the prepared stream in `directory`, None when none is there."""
    try:
        return json.loads((Path(directory) / "manifest.json").read_text()).get("content_sha256")
    except (OSError, ValueError):
        return None


def recorded_stream_dir(run_dir: Path) -> Optional[Path]:
    """The directory of the stream the run trained on, as it recorded it; None when that path is gone."""
    record = read_record(run_dir)
    if record is None:
        return None
    directory = Path(record["dir"])
    found = manifest_hash(directory)
    if found is None:
        return None
    if found != record["content_sha256"]:
        raise ParcError(
            f"{directory} now holds another stream (content_sha256 {found[:12]}, the run {run_dir} "
            f"trained on {record['content_sha256'][:12]}): restore that data, or prepare it "
            f"elsewhere and edit {Path(run_dir) / STREAM_RECORD}"
        )
    return directory


def check_same_stream(run_dir: Path, directory: Path) -> None:
    """Refuse a stream found elsewhere (beside the runs, or given) when the run recorded another fingerprint."""
    record = read_record(run_dir)
    found = manifest_hash(directory)
    if record is not None and found is not None and found != record["content_sha256"]:
        raise ParcError(
            f"{directory} is not the stream {run_dir} trained on (content_sha256 {found[:12]}, "
            f"recorded {record['content_sha256'][:12]}): point to the data it trained on"
        )
