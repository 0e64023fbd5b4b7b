"""Crash-safe files for prepared data: bounded flat arrays and directories published by rename.

A prepared directory (a part, the tokenizer, a re-cut stream) is built under a private `.tmp-*` name and
renamed into place only when complete, with its record written inside it first. So after a crash nothing
looks complete, and two processes racing to build the same thing cannot mix their files: the first rename
wins and the loser discards its copy (the content is deterministic, so nothing is lost).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import List

import numpy as np

from parc.store.fileio import atomic_write_json, fsync_dir, fsync_tree, read_json, sha256_of_files  # noqa: F401 (re-exported)


def private_tmp_dir(final: Path) -> Path:
    """A fresh build directory beside `final`, named after this host and process."""
    final = Path(final)
    tmp = final.with_name(f".tmp-{final.name}-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def remove_dead_tmp_dirs(final: Path) -> None:
    """Delete build directories for `final` left by crashed processes of this host (others may be live)."""
    final = Path(final)
    host = socket.gethostname()
    for tmp in final.parent.glob(f".tmp-{final.name}-{host}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def remove_own_tmp_files(root: Path) -> None:
    """Delete what this process left half-written under `root` (build directories, atomic-write temp files)."""
    for tmp in Path(root).rglob(f".tmp-*-{socket.gethostname()}-{os.getpid()}"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_dir(tmp: Path, final: Path) -> bool:
    """Rename the complete `tmp` to `final`. False (and `tmp` removed) when another process got there first."""
    fsync_tree(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        if not Path(final).is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    fsync_dir(Path(final).parent)
    return True


class ArrayWriter:
    """Append rows of `row_len` tokens to numbered flat files of at most `max_file_bytes` (whole rows each).

    Keeps a sha256 per file and one over everything written, so no file is read back to be hashed.
    """

    def __init__(self, directory: Path, prefix: str, dtype: str, row_len: int, max_file_bytes: int):
        self.directory, self.prefix, self.dtype, self.row_len = Path(directory), prefix, np.dtype(dtype), row_len
        self.rows_per_file = max(1, max_file_bytes // (row_len * self.dtype.itemsize))
        self.files: List[dict] = []  # {"path", "rows", "sha256"} of closed files
        self.total_hash = hashlib.sha256()
        self.rows = 0
        self._handle = None
        self._file_hash = None
        self._file_rows = 0

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.row_len)
        while len(rows):
            if self._handle is None:
                self._open()
            take = rows[: self.rows_per_file - self._file_rows]
            data = take.tobytes()
            self._handle.write(data)
            self._file_hash.update(data)
            self.total_hash.update(data)
            self._file_rows += len(take)
            self.rows += len(take)
            rows = rows[len(take) :]
            if self._file_rows == self.rows_per_file:
                self._close()

    def finish(self) -> List[dict]:
        if self._handle is not None:
            self._close()
        return self.files

    def _open(self) -> None:
        name = f"{self.prefix}-{len(self.files):05d}.bin"
        self._handle = open(self.directory / name, "wb")
        self._file_hash, self._file_rows = hashlib.sha256(), 0
        self.files.append({"path": name, "rows": 0, "sha256": ""})

    def _close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.files[-1].update(rows=self._file_rows, sha256=self._file_hash.hexdigest())
        self._handle = None
