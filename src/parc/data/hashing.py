"""The batch hash: a short stable digest of token ids, recorded for every step in metrics.jsonl and checkpoints."""

from __future__ import annotations

import hashlib

import numpy as np


def batch_hash(batch: np.ndarray) -> str:
    """Short stable hash of a batch's token ids (sha256 of little-endian int32 bytes, 16 hex digits)."""
    return hashlib.sha256(np.ascontiguousarray(batch, dtype="<i4").tobytes()).hexdigest()[:16]
