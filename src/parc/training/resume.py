"""Where a run starts: fresh, the newest local checkpoint, a named one, or a Hub revision; and the refusal
of a checkpoint whose data, architecture or recipe differs from this run's."""

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


def check_compatible(saved: Dict, current: Dict, where: Path) -> None:
    """Refuse to continue a run whose data, architecture, seed or recipe differ from this config."""
    checks = {
        "data": (saved["data"], current["data"]),
        "seed": (saved["seed"], current["seed"]),
        "arch": (saved["model_config"], current["model_config"]),
    }
    for key, value in current["recipe"].items():
        checks[f"trainer.{key}"] = (saved["recipe"].get(key), value)
    for key in ("init_from", "branch_from"):  # a branched run resumes without them; another source is refused
        if current.get(key) is not None:
            checks[key] = (saved.get(key), current[key])
    old_steps, new_steps = checks["trainer.max_steps"]
    if old_steps != new_steps:  # before "data": the data slice changes with it, and this is the cause to name
        raise ParcError(
            f"{where} was trained with trainer.max_steps={old_steps}, this run asks for {new_steps}: the "
            f"run's data slice (global_batch_size x max_steps sequences of data.shard) and its LR and "
            f"checkpoint schedules depend on it, so a resumed run cannot change it; to continue these "
            f"weights with a new schedule, start a new run from them: init_from={where} "
            f"output_dir=<a new directory>"
        )
    for name, (old, new) in checks.items():
        if old != new:
            detail = _first_difference(old, new)
            raise ParcError(
                f"{where} was trained with a different {name} ({detail}); resume with the same "
                f"settings, or start a new run elsewhere (resume=none output_dir=...)"
            )


def _first_difference(old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return f"{key}: checkpoint {old.get(key)!r}, this run {new.get(key)!r}"
    return f"checkpoint {old!r}, this run {new!r}"


def recipe(trainer_cfg) -> Dict:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(trainer_cfg, resolve=True)
    return {k: v for k, v in values.items() if k not in ADJUSTABLE_TRAINER_KEYS}
