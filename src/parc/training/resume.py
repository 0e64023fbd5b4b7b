"""Where a run starts: fresh, the newest local checkpoint, a named one, a Hub revision or a raw GPT-NeoX checkpoint
(`resume=neox:`); what a checkpoint's recipe is (`recipe`). The refusal of a checkpoint whose data, architecture or
recipe differs from this run's is parc.training.source's `check_compatible`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional

from parc.errors import ParcError
from parc.store import checkpoint, integrity
from parc.store.metricsfile import METRICS_FILE

# Trainer settings a resumed run may change (they do not change what is computed, only how it is split).
ADJUSTABLE_TRAINER_KEYS = {"micro_batch_size", "log_every", "progress", "strategy"}


def holds_run(output_dir: Path) -> bool:
    output_dir = Path(output_dir)
    return (output_dir / METRICS_FILE).exists() or any(output_dir.glob("checkpoint-*"))


def find_start(cfg, output_dir: Path, allow_download: bool = True) -> Optional[Path]:
    """The checkpoint to resume from, or None for a fresh start. Raises ParcError for an impossible request.

    With allow_download=False (dry runs, non-main ranks) a Hub revision is never fetched.
    """
    output_dir = Path(output_dir)
    resume = cfg.resume
    if resume == "none":
        if holds_run(output_dir) and not cfg.overwrite:
            raise ParcError(
                f"{output_dir} already holds a run: pass resume=auto to continue it, "
                f"overwrite=true to delete it and start over, or choose another output_dir="
            )
        return None
    if resume == "auto":
        return _newest(cfg, output_dir, allow_download)
    if resume.startswith("hub:"):
        return _hub_start(cfg, output_dir, allow_download)
    if resume.startswith("neox:"):  # a raw GPT-NeoX checkpoint (weights, Adam moments, schedule, step)
        return _neox_start(cfg, output_dir, allow_download)
    path = output_dir / resume if "/" not in resume else Path(resume)
    if not (checkpoint.is_complete(path) and checkpoint.has_train_state(path)):
        available = [p.name for p in checkpoint.complete_checkpoints(output_dir) if checkpoint.has_train_state(p)]
        raise ParcError(
            f"resume target {path} is not a complete checkpoint with training state; "
            f"resumable here: {', '.join(available) or 'none'} (or use resume=auto)"
        )
    integrity.require_verified(path, check_sha=allow_download)  # sizes first, before anything is written
    return path


def _newest(cfg, output_dir: Path, allow_download: bool) -> Optional[Path]:
    """resume=auto: the newest local checkpoint whose files verify, else the newest complete Hub revision."""
    if not allow_download:  # the early check: nothing to refuse yet; the real pick verifies (below)
        return checkpoint.newest_resumable(output_dir)
    found = integrity.newest_verified(output_dir)  # skips (and names) damaged checkpoints
    if found is None and cfg.hub.repo_id:
        from parc.hub.publisher import resolve_hub_checkpoint

        found = resolve_hub_checkpoint(cfg, output_dir, None)
    return found


def _hub_start(cfg, output_dir: Path, allow_download: bool) -> Optional[Path]:
    """resume=hub:<revision>: that revision of the run's own repo, fetched and verified."""
    from parc.hub.reader import resume_spec
    from parc.hub.repo import repo_id_for

    spec = resume_spec(cfg.resume, repo_id_for(cfg) if cfg.hub.repo_id else None)  # a bad spec fails early
    if not allow_download:
        return None
    from parc.hub.publisher import resolve_hub_checkpoint

    found = resolve_hub_checkpoint(cfg, output_dir, spec.revision)
    if found is None:
        raise ParcError(
            f"revision {spec.revision} of {spec.repo_id} is missing or incomplete; "
            f"list revisions with python -m parc.revisions {spec.repo_id}"
        )
    return found


def _neox_start(cfg, output_dir: Path, allow_download: bool):
    from parc.training import neox_source
    from parc.training.initfrom import DOWNLOAD_DIR

    if cfg.init_from is not None:
        raise ParcError(
            f"resume={cfg.resume} continues a raw checkpoint, init_from= starts from other weights: pass one of them"
        )
    if holds_run(output_dir) and not cfg.overwrite:
        raise ParcError(
            f"{output_dir} already holds a run: resume=auto continues it (it records where it started), "
            f"overwrite=true starts over from {cfg.resume}, or choose another output_dir="
        )
    start = neox_source.parse(cfg.resume, output_dir / DOWNLOAD_DIR if allow_download else None)
    return start if allow_download or not cfg.resume.startswith("neox:hub:") else None


def starts_over(cfg) -> bool:
    """overwrite=true with a start that ignores the run already in output_dir (resume=none, or a raw NeoX checkpoint)."""
    return bool(cfg.overwrite) and (cfg.resume == "none" or cfg.resume.startswith("neox:"))


def clear_run(output_dir: Path) -> None:
    """overwrite=true: remove a previous run's checkpoints and metrics (only after every check passed)."""
    output_dir = Path(output_dir)
    for path in [*output_dir.glob("*checkpoint-*"), output_dir / "hub_journal"]:
        if path.is_dir():
            shutil.rmtree(path)
    (output_dir / METRICS_FILE).unlink(missing_ok=True)


def recipe(trainer_cfg) -> Dict:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(trainer_cfg, resolve=True)
    return {k: v for k, v in values.items() if k not in ADJUSTABLE_TRAINER_KEYS}
