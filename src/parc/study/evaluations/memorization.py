"""Memorization, Pythia's protocol, over the exact sequences a run trained on up to the checkpoint's step.

For each training sequence scored, its first `eval.prompt_len` tokens are the prompt and its next
`eval.continuation_len` tokens the true continuation; greedy decoding (`parc.study.evaluations.greedy`, equal to
`model.generate` greedy decoding) produces as many tokens. Metrics: `score`, the mean fraction of greedy tokens
equal to the true ones (Pythia's memorization score), and `memorized`, the fraction of sequences reproduced
exactly (score 1.0).

Which sequences: training-order positions p = (seq_step - 1) * global_batch_size + seq_row, where seq_step is
the optimizer update that consumed the sequence (1-based, `python -m parc.batch step=<seq_step>` shows its
batch) and seq_row its row in that batch; `parc.data.stream.BatchPlan` maps them to the run's stream. The
checkpoint at step N scores the positions consumed so far, p < N * global_batch_size: all of them
(`eval.sample=null`), or the first `eval.sample` of them in one fixed random order of all positions (seeded by
SAMPLE_SEED), so every run of a grid with the same trainer settings scores the same positions. Step 0 scores
nothing (n = 0, value NaN). Before scoring, the checkpoint's own last batch is hashed and compared with the
hash the run recorded, so the sequences are the ones it trained on.

Panel mode (`eval.panel.enabled=true`, presets `eval=panel` and `eval=canaries`): a fixed set of units (training
sequences by checkpoint interval, never-trained controls, canaries and their references) scored at every
checkpoint, before and after training on them, with NLL, accuracy and score32 (parc.study.evaluations.panel).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from parc.data.stream import BatchPlan, open_stream
from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST
from parc.store.fileio import read_json
from parc.study.evaluations import EvalResult, Evaluation, register
from parc.study.evaluations.greedy import greedy_continuations
from parc.study.evaluations.heldout import find_stream_dir
from parc.study.evaluations.panel import PanelMode, panel_rows
from parc.study.sources.runs import CheckpointRef, run_config

SAMPLE_SEED = 0  # the fixed order the sample is drawn from; a constant so that every invocation agrees
TASK = "memorization"


def positions_at(
    step: int, batch_size: int, total: int, sample: Optional[int], order: Optional[np.ndarray]
) -> np.ndarray:
    """Sorted training-order positions scored at checkpoint `step` (see the module docstring)."""
    consumed = min(step * batch_size, total)
    if sample is None:
        return np.arange(consumed, dtype=np.int64)
    return np.sort(order[order < consumed][:sample])


def sample_order(total: int) -> np.ndarray:
    return np.random.default_rng(SAMPLE_SEED).permutation(total).astype(np.int64)


class RunData:
    """The batch plan of one run: which stream sequence each training-order position is."""

    def __init__(self, ref: CheckpointRef, config: dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(config)
        cfg.data.dir = str(find_stream_dir([ref], {ref.source: config}))
        self.plan = BatchPlan.from_config(cfg, open_stream(cfg))
        self.batch_size = self.plan.global_batch_size
        self.total = self.plan.sequences_per_shard

    def stream_indices(self, positions: np.ndarray) -> np.ndarray:
        steps, rows = positions // self.batch_size + 1, positions % self.batch_size
        out = np.empty(len(positions), dtype=np.int64)
        for step in np.unique(steps):
            mask = steps == step
            out[mask] = self.plan.indices(int(step))[rows[mask]]
        return out

    def check_trained_on(self, ref: CheckpointRef) -> None:
        """The checkpoint's last batch, hashed, equals the hash its run recorded for it."""
        if ref.step == 0:
            return
        path = Path(ref.local_dir) / MANIFEST
        manifest = read_json(path) if path.is_file() else {}
        recorded = (manifest.get("batch_hashes") or {}).get(str(ref.step))
        if recorded is not None and recorded != self.plan.batch_hash(ref.step):
            raise ParcError(
                f"{ref.run}@{ref.revision}: its batch of step {ref.step} is not the one in "
                f"{self.plan.stream.dir}: the stream beside the runs is not the one it trained on"
            )


@register("memorization")
class Memorization(Evaluation):
    def __init__(self, eval_cfg, refs):
        super().__init__(eval_cfg, refs)
        self.sample = None if eval_cfg.sample is None else int(eval_cfg.sample)
        self.prompt_len, self.continuation_len = int(eval_cfg.prompt_len), int(eval_cfg.continuation_len)
        self.batch_size = int(eval_cfg.batch_size)
        self.runs: Dict[str, RunData] = {}
        self.orders: Dict[int, np.ndarray] = {}
        configs: Dict[str, dict] = {}
        for ref in refs:
            if ref.source in self.runs:
                continue
            config = None if ref.is_hub else run_config(ref)
            if not config:
                raise ParcError(
                    f"memorization scores the sequences a run trained on, and {ref.run} is not a local "
                    f"Parc run (no training config): evaluate Parc run directories with eval=memorization"
                )
            configs[ref.source] = config
            data = self.runs[ref.source] = RunData(ref, config)
            if self.prompt_len + self.continuation_len > data.plan.stream.seq_len:
                raise ParcError(
                    f"eval.prompt_len + eval.continuation_len = {self.prompt_len + self.continuation_len} "
                    f"exceeds the {data.plan.stream.seq_len} tokens of {ref.run}'s training sequences: "
                    f"lower them"
                )
            if self.sample is not None and data.total not in self.orders:
                self.orders[data.total] = sample_order(data.total)
        self.panel = PanelMode(eval_cfg, self.runs, configs) if eval_cfg.panel.enabled else None

    def run_panel(self, loaded) -> EvalResult:
        """The panel's units at this checkpoint (parc.study.evaluations.panel)."""
        frame, _ = self.panel.score(loaded.model, loaded.ref.source)
        frame.insert(1, "task", TASK)
        rows = panel_rows(frame, TASK)
        return EvalResult(rows, frame, summary=_panel_summary(rows))

    def fingerprint(self) -> dict:
        if self.panel is not None:  # the panel's units replace the sample
            return {
                "prompt_len": self.prompt_len,
                "continuation_len": self.continuation_len,
                **self.panel.fingerprint(),
            }
        return {
            "sample": self.sample,
            "sample_seed": SAMPLE_SEED,
            "prompt_len": self.prompt_len,
            "continuation_len": self.continuation_len,
            "batch_size": self.batch_size,
        }

    def run(self, loaded) -> EvalResult:
        import pandas as pd

        ref = loaded.ref
        data = self.runs[ref.source]
        data.check_trained_on(ref)
        if self.panel is not None:
            return self.run_panel(loaded)
        positions = positions_at(ref.step, data.batch_size, data.total, self.sample, self.orders.get(data.total))
        sequences = data.plan.stream.sequences(data.stream_indices(positions))
        end = self.prompt_len + self.continuation_len
        truth = sequences[:, self.prompt_len : end]
        result = greedy_continuations(loaded.model, sequences[:, : self.prompt_len], truth, self.batch_size)
        scores = (result.tokens == truth).mean(axis=1) if len(truth) else np.zeros(0)
        memorized = (result.first_mismatch == self.continuation_len).astype(float)
        rows = [metric_row(name, values) for name, values in (("memorized", memorized), ("score", scores))]
        examples = pd.DataFrame(
            {
                "example_id": positions,
                "task": TASK,
                "seq_step": positions // data.batch_size + 1,
                "seq_row": positions % data.batch_size,
                "score": scores,
                "memorized": memorized,
                "matched_prefix": result.first_mismatch,
            }
        )
        return EvalResult(
            rows,
            examples,
            summary=f"memorized {rows[0]['value']:.4f}, score {rows[1]['value']:.4f} "
            f"of {len(positions)} training sequences",
        )


def _panel_summary(rows) -> str:
    shown = {row["metric"]: row["value"] for row in rows}
    parts = [f"{name} {shown[name]:.4f}" for name in ("nll_train", "nll_control", "exposure_canary") if name in shown]
    return "panel: " + ", ".join(parts)


def metric_row(metric: str, values: np.ndarray) -> dict:
    n = len(values)
    value = float(values.mean()) if n else math.nan
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"task": TASK, "metric": metric, "value": value, "stderr": stderr, "n": n}
