"""Checkpoint storage: the `checkpoint-N/` format and its manifest, integrity checks (parc.verify), which steps
are checkpointed, the disk plan, crash-safe file writes and disk faults as one-line errors, and the format of a
run's metrics.jsonl (metricsfile: its one reader).

Everything that writes a file durably goes through here. Imports only parc.errors and parc.config; never
archs, data, hub, training or study.
"""

from parc import lazy_exports

PUBLIC = {
    "verify_tree": "verify_report",
    "checkpoint_steps": "steps",
    "atomic_write_json": "fileio",
    "DiskWrites": "iofaults",
    "complete_checkpoints": "checkpoint",
    "MANIFEST": "checkpoint",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
