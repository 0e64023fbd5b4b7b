"""Crash-safe file primitives shared by data, checkpoints and the Hub journal: atomic JSON, fsync, hashes.

A file written with `atomic_write_json` is either absent, its old content, or its complete new content,
even across a power cut (the temp file and then the directory entry are fsynced).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Callable, Iterable

HASH_CHUNK = 1 << 24  # bytes read at a time when hashing existing files


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file below `root`, then each directory (deepest first), so a rename of `root` is durable."""
    root = Path(root)
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(root)


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON so that `path` is either absent, the old content, or the complete new content."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path):
    with open(path) as handle:
        return json.load(handle)


def sha256_of_files(paths: Iterable[Path]) -> str:
    """sha256 of the concatenated bytes of `paths`, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(HASH_CHUNK), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_of_files([path])


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write a file through `write(temp_path)` so that `path` is absent, old, or complete (any format: parquet,
    CSV, PNG, torch). The temp file sits beside `path`, is fsynced, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{socket.gethostname()}-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path
