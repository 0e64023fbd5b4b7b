"""The exact batch an optimizer update consumed, from a run's config alone (parc.batch).

`show_batch(step, overrides, out, decode, run)`: the config from training overrides, or `run=` (that run's own
config and recorded data, from any directory) -> the global batch of update N printed as token ids (or decoded
text, or saved atomically as .npy), with its batch hash, which equals the `batch_hash` of step N in that run's
metrics.jsonl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from parc.config import RUN_CONFIG, compose, read_run_config
from parc.data.stream import BatchPlan, batch_hash, open_stream
from parc.data.tokenizer import load_saved_tokenizer
from parc.errors import ParcError
from parc.training.runconfig import config_on_this_machine, validate


def run_config_here(run_dir: Path, overrides: List[str]):
    """The config of the run in `run_dir` (its config.yaml), reading its data where the run recorded it."""
    from omegaconf import OmegaConf

    config = read_run_config(run_dir)
    if config is None:
        raise ParcError(f"run={run_dir} holds no {RUN_CONFIG}: pass the output_dir of a parc.train run")
    cfg = config_on_this_machine({"data": config["data"], "trainer": config["trainer"]}, run_dir, overrides)
    if config.get("intervention"):  # a branch's (or an intervened run's) data plan after step k
        cfg.intervention = OmegaConf.merge(cfg.intervention, config["intervention"])
    return cfg


def show_batch(
    step: int, overrides: List[str], out: Optional[Path] = None, decode: bool = False, run: Optional[Path] = None
) -> None:
    """Print (or save to `out`, or decode) the global batch of optimizer update `step`, with its batch hash; the
    config is composed from `overrides`, or is the run in `run`'s own (the overrides applied to it)."""
    cfg = compose(overrides) if run is None else run_config_here(Path(run), overrides)
    validate(cfg)
    plan = BatchPlan.from_config(cfg, open_stream(cfg))
    batch = plan.batch(step)
    header = (
        f"# step {step} of {plan.max_steps}: batch hash {batch_hash(batch)}, {batch.shape[0]} x {batch.shape[1]} "
        f"tokens, shard {plan.shard}, data_seed {plan.data_seed}, data {plan.stream.dir}"
        + (f", holdout {plan.holdout} (seed {plan.holdout_seed})" if plan.holdout else "")
    )
    canaries = plan.canary_rows(step)
    if canaries:  # rows planted by data.canaries (canaries.json of the run lists every copy)
        header += "\n# canary rows: " + ", ".join(f"row {row} = canary {c}" for row, c in sorted(canaries.items()))
    change = plan.edits.intervention if plan.edits is not None else None
    if change is not None:
        header += f"\n# intervention {change.name} from step {change.step + 1} on"
    if out is not None:
        out = Path(out)
        if not out.parent.is_dir():
            raise ParcError(f"out={out}: directory {out.parent} does not exist; create it or choose another path")
        tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
        with open(tmp, "wb") as handle:  # atomic: a half-written .npy never carries the final name
            np.save(handle, batch)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
        print(f"{header}; saved to {out}")
    elif decode:
        tokenizer = load_saved_tokenizer(plan.stream.tokenizer_dir)
        print(header)
        for row, ids in enumerate(batch):
            print(f"# sequence {row}" + (f" (canary {canaries[row]})" if row in canaries else ""))
            print(tokenizer.decode(ids.tolist()))
    else:
        print(header)
        np.savetxt(sys.stdout, batch, fmt="%d")
