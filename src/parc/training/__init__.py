"""Training a cell of the grid: the loop (trainer), optimizer and LR schedules (incl. GPT-NeoX's), loss,
DDP/FSDP and precision (strategy), speed and FLOPs, metrics.jsonl, memory plan, resume, init_from, what a run
config means (runconfig: validate, Plan), the dry-run plan, grid status, the batch view and the parity harness.

Imports store, kernels, archs, data, hub and the shared bottom; never study.
"""

from parc import lazy_exports

PUBLIC = {
    "train": "trainer",
    "Trainer": "trainer",
    "validate": "runconfig",
    "Plan": "runconfig",
    "portable_config": "runconfig",
    "dry_run_report": "dryrun",
    "log_to_stderr": "metrics",
    "show_batch": "batch_view",
    "grid_status": "grid",
    "run_parity": "parity",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
