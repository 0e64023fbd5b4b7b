"""The data layer: prepare a packed token stream once (`prepare`), then read the batch of any step (`stream`).

See parc.data.prepare for the packing rules, parts and manifest, and parc.data.stream for the config
checks, shards and step numbering. Imports store (crash-safe writes) and the shared bottom; never hub,
training or study.
"""

from parc.data.location import STREAM_RECORD, check_same_stream, record_stream, recorded_stream_dir
from parc.data.prepare import PrepareReport, ensure_prepared, prepare_data
from parc.data.stream import BatchPlan, PackedStream, batch_hash, data_status, open_stream

__all__ = [
    "BatchPlan",
    "PackedStream",
    "PrepareReport",
    "STREAM_RECORD",
    "check_same_stream",
    "record_stream",
    "recorded_stream_dir",
    "batch_hash",
    "data_status",
    "ensure_prepared",
    "open_stream",
    "prepare_data",
]
