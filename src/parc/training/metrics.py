"""What a run reports: the console progress bar, `<output_dir>/metrics.jsonl` (one row per step), and wandb."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict

from omegaconf import OmegaConf
from tqdm.auto import tqdm

# The file's format and its one reader live in parc.store.metricsfile (hub/ reads the file too); the writer is here.
from parc.store.metricsfile import METRICS_FILE, rows_text, truncate_metrics


class RunReporter:
    """Rank 0 only: appends metrics rows (flushed each step), drives the progress bar and wandb."""

    def __init__(self, cfg, output_dir: Path, start_step: int, max_steps: int):
        self.path = Path(output_dir) / METRICS_FILE
        truncate_metrics(self.path, start_step)
        self.file = open(self.path, "a")
        self.intact_bytes = self.file.tell()  # the file ends with a complete row here
        self.run_dir = Path(output_dir)
        self.bar = tqdm(
            total=max_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            disable=not cfg.trainer.progress,
            desc=f"{cfg.arch.name} seed {cfg.seed}",
        )
        self.wandb_run = self._start_wandb(cfg, output_dir) if cfg.logger.wandb else None

    @staticmethod
    def _start_wandb(cfg, output_dir: Path):
        import wandb

        # A stable id derived from the output dir: a resumed or requeued run continues the same wandb run.
        run_id = hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
        return wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            mode=cfg.logger.mode,
            id=run_id,
            resume="allow",
            dir=str(output_dir),
            tags=list(cfg.logger.tags),
            name=Path(output_dir).name,
            config=OmegaConf.to_container(cfg, resolve=True),
        )

    def log(self, row: Dict) -> None:
        from parc.store.checkpoint import resume_hint
        from parc.store.iofaults import DiskWrites

        with DiskWrites(
            f"appending step {row['step']} to {self.path}",
            self.path.parent,
            cleanup=self._drop_partial_row,
            elsewhere="choose another output_dir=",
            then=lambda: resume_hint(self.run_dir),
        ):
            self.file.write(rows_text([row]))
            self.file.flush()
        self.intact_bytes = self.file.tell()
        self.bar.update(row["step"] - self.bar.n)
        postfix = {"loss": f"{row['loss']:.4f}", "lr": f"{row['lr']:.2e}", "tok/s": f"{row['tokens_per_s']:.0f}"}
        if row.get("mfu") is not None:
            postfix["mfu"] = f"{row['mfu']:.1%}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["step"])

    def note(self, message: str) -> None:
        self.bar.write(message)

    def _drop_partial_row(self) -> None:
        """After a failed write: close the file (its unwritten buffer is lost) and cut off a partial row."""
        try:
            self.file.close()
        except OSError:
            pass
        self.file = None
        os.truncate(self.path, self.intact_bytes)

    def close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        self.bar.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def format_plan(lines: Dict[str, object]) -> str:
    width = max(len(k) for k in lines)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in lines.items())


def log_to_stderr() -> None:
    """For the command-line tools: parc's progress messages on stderr, one per line."""
    logger = logging.getLogger("parc")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
