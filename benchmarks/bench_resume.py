"""B2: resume overhead at the Parc tokens-per-step (512 x 1024): ours vs the original's streamed-dataset resume.

Measured: seconds from process start to the start of the first new optimizer step, resuming from
checkpoint-k, minus the same for a fresh run (which has nothing to restore or skip). Both sides train the
demo's tiny Pythia with global batch 512 = micro-batch 32 x accumulation 16, seq 1024, so that the data
pipeline, not the model, is what differs:
- ours: `python -m parc.train` resuming from a real checkpoint-k written by `Trainer.save`; the data is a
  generated packed stream (a sparse file + manifest, as `parc.prepare` lays it out): `BatchPlan` reaches
  step k+1 in O(1), so the overhead should not depend on k.
- the original: `transformers.Trainer.train(resume_from_checkpoint=checkpoint-k)` with the script's
  streamed `datasets.map(tokenize)` pipeline (see original.py) and a checkpoint written by the Trainer's own
  `_save_checkpoint`. With `ignore_data_skip=False` (the default) it replays the k x 16 consumed
  micro-batches, reading and tokenizing k x 512 documents (~1.1k tokens each, like OpenWebText's mean).
Each child stops itself when its first new step begins. Fresh runs hold a weights-only checkpoint-0, so
ours does not spend its seed-checkpoint save inside the fresh measurement (this only raises our overhead).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import common

GLOBAL_BATCH, MICRO_BATCH, SEQ_LEN = 512, 32, 1024
MARKER = "FIRST_NEW_STEP"


class FirstNewStep(BaseException):
    """Raised as a run's first new step begins: what each measured child is there for is done (a BaseException,
    so that no handler in the trainers takes it for a failure)."""


def first_new_step(step: int) -> None:
    print(f"{MARKER} {time.time()} {step}", flush=True)
    raise FirstNewStep


TARGET_OURS_S, TARGET_RATIO = 1.0, 10.0


def sizes(args) -> dict:
    if args.smoke:
        return {"ks": (1,), "ours_repeats": 1, "baseline_repeats": {1: 1}}
    if args.quick:
        return {"ks": (10, 100), "ours_repeats": 3, "baseline_repeats": {10: 1, 100: 1}}
    return {"ks": (10, 100, 1000), "ours_repeats": 5, "baseline_repeats": {10: 3, 100: 2, 1000: 1}}


def overrides(work: Path, max_k: int, output_dir: Path) -> list:
    """The run both sides train (tiny Pythia, Parc batch shape) as `python -m parc.train` overrides."""
    return [
        "experiment=demo",
        "arch=pythia",
        f"data.dir={stream_dir(work, max_k)}",
        "data.auto_prepare=false",
        f"data.seq_len={SEQ_LEN}",
        f"trainer.global_batch_size={GLOBAL_BATCH}",
        f"trainer.micro_batch_size={MICRO_BATCH}",
        f"trainer.max_steps={max_k + 1}",
        "trainer.warmup_steps=100",
        "trainer.lr=6e-4",
        "trainer.progress=false",
        "checkpoint.every=1000000",
        f"output_dir={output_dir}",
        "device=cpu",
    ]


def stream_dir(work: Path, max_k: int) -> Path:
    return work / "b2" / f"stream-{max_k + 1}-steps"


def write_stream(work: Path, max_k: int) -> None:
    """A packed stream of (max_k + 1) x 512 sequences of 1024 tokens, laid out as parc.prepare writes one.

    The sequence file is sparse (the training never reads it here: each child stops before its first step),
    the tokenizer is the demo's, the manifest records the identity fields parc.prepare records.
    """
    import parc
    from parc.config import compose
    from parc.data.files import atomic_write_json
    from parc.data.prepare import _identity_fields, stream_dtype
    from parc.data.stream import FORMAT, MANIFEST
    from parc.data.tokenizer import load_saved_tokenizer

    root = stream_dir(work, max_k)
    if (root / MANIFEST).is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    (root / "parts").mkdir(parents=True)
    shutil.copytree(common.demo_tokenizer_dir(work), root / "tokenizer")
    cfg = compose(overrides(work, max_k, work / "unused"))
    sequences = (max_k + 1) * GLOBAL_BATCH
    dtype = stream_dtype(cfg.data.vocab_size)
    with open(root / "parts" / "seq-00000.bin", "wb") as handle:
        handle.truncate(sequences * SEQ_LEN * 2)
    manifest = {
        "format": FORMAT,
        **_identity_fields(cfg, load_saved_tokenizer(root / "tokenizer"), root, dtype),
        "num_sequences": sequences,
        "tokens": {"in": sequences * SEQ_LEN, "kept": sequences * SEQ_LEN},
        "num_parts": 1,
        "files": [{"path": "parts/seq-00000.bin", "sequences": sequences, "sha256": "sparse"}],
        "content_sha256": f"sparse-{sequences}",
        "parc_version": parc.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(root / MANIFEST, manifest)


# --- children: each runs in its own process ----------------------------------------------------------------


def child_ours_checkpoint(k: int, args: list) -> None:
    """Write checkpoint-k of the run (k = 0: weights only, the fresh run's seed checkpoint)."""
    import torch

    from parc.config import compose
    from parc.data.stream import BatchPlan, open_stream
    from parc.training.runconfig import validate
    from parc.training.trainer import Trainer, make_accelerator

    cfg = compose(args + (["checkpoint.save_train_state=false"] if k == 0 else []))
    validate(cfg)
    accelerator = make_accelerator(cfg)
    stream = open_stream(cfg)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, accelerator, BatchPlan.from_config(cfg, stream), stream.tokenizer_dir, start=None)
    if k:
        for param in trainer.model.parameters():  # an update's worth of optimizer state (Adam moments)
            param.grad = torch.zeros_like(param)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        for _ in range(k):
            trainer.scheduler.step()
    trainer.step, trainer.tokens = k, k * trainer.plan.tokens_per_step
    trainer.save(scheduled=True, batch_hashes={})


def child_ours_run(args: list) -> None:
    """`python -m parc.train <args>`, stopped as its first new step begins."""
    import parc.training.trainer
    from parc.train import main

    train_step = parc.training.trainer.Trainer.train_step
    parc.training.trainer.Trainer.train_step = lambda self, step: first_new_step(step)
    try:
        main(args)
    finally:  # smoke runs call this in the benchmark's own process
        parc.training.trainer.Trainer.train_step = train_step


def original_trainer(args: list, stop_at_first_step: bool):
    """transformers.Trainer as the script builds it, on the script's streamed, tokenized documents."""
    import original
    from transformers import DataCollatorForLanguageModeling, Trainer

    from parc import archs
    from parc.config import compose
    from parc.data.tokenizer import load_saved_tokenizer
    from parc.training import parity

    cfg = compose(args)
    tokenizer_dir = Path(cfg.data.dir) / "tokenizer"
    tokenizer = load_saved_tokenizer(tokenizer_dir)
    tokenizer.pad_token = tokenizer.eos_token
    documents = common.owt_like_documents(tokenizer_dir)
    train_dataset = original.tokenized_stream(documents, cfg.trainer.max_steps * GLOBAL_BATCH, tokenizer)

    class FirstStepTrainer(Trainer):
        def training_step(self, *a, **kw):
            if stop_at_first_step:
                first_new_step(self.state.global_step + 1)
            return super().training_step(*a, **kw)

    return FirstStepTrainer(
        model_init=lambda: archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed),
        args=parity.reference_arguments(cfg, cfg.output_dir, GLOBAL_BATCH // MICRO_BATCH),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False, seed=cfg.seed),
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )


def child_original_checkpoint(k: int, args: list) -> None:
    """checkpoint-k written by the Trainer's own `_save_checkpoint` (weights, optimizer, scheduler, RNG, state)."""
    import torch

    trainer = original_trainer(args, stop_at_first_step=False)
    trainer.create_optimizer_and_scheduler(num_training_steps=trainer.args.max_steps)
    for param in trainer.model.parameters():
        param.grad = torch.zeros_like(param)
    trainer.optimizer.step()
    for _ in range(k):
        trainer.lr_scheduler.step()
    trainer.state.global_step, trainer.state.max_steps = k, trainer.args.max_steps
    trainer.state.train_batch_size = MICRO_BATCH
    trainer._save_checkpoint(trainer.model, trial=None)


def child_original_run(checkpoint: str, args: list) -> None:
    trainer = original_trainer(args, stop_at_first_step=True)
    trainer.train(resume_from_checkpoint=checkpoint or None)


CHILDREN = {
    "ours-checkpoint": lambda a: child_ours_checkpoint(int(a[0]), a[1:]),
    "ours-run": child_ours_run,
    "original-checkpoint": lambda a: child_original_checkpoint(int(a[0]), a[1:]),
    "original-run": lambda a: child_original_run(a[0], a[1:]),
}


# --- the parent ---------------------------------------------------------------------------------------------


def child_main(argv: list) -> bool:
    """`bench_resume.py --child <mode> <args>`: one child's work; True when it stopped at its first new step."""
    try:
        CHILDREN[argv[0]](argv[1:])
    except FirstNewStep:
        return True
    return False


def spawn(local: bool, mode: str, *args) -> dict:
    return common.child([__file__, "--child", mode, *args], local=local)


def prepare_runs(work: Path, max_k: int, ks, local: bool) -> dict:
    """Run directories holding checkpoint-k (k = 0: fresh) for both sides; built once and reused."""
    runs = {}
    for side in ("ours", "original"):
        for k in (0, *ks):
            run_dir = work / "b2" / f"{side}-{max_k + 1}" / f"k{k}"
            done = run_dir / ".ready"
            if not done.exists():
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir(parents=True)
                if side == "ours":
                    spawn(local, "ours-checkpoint", k, *overrides(work, max_k, run_dir))
                elif k:
                    spawn(local, "original-checkpoint", k, *overrides(work, max_k, run_dir))
                done.touch()
            runs[side, k] = run_dir
    return runs


def time_to_first_step(side: str, run_dir: Path, k: int, work: Path, max_k: int, local: bool) -> float:
    args = overrides(work, max_k, run_dir)
    result = (
        spawn(local, "ours-run", *args)
        if side == "ours"
        else spawn(local, "original-run", run_dir / f"checkpoint-{k}" if k else "", *args)
    )
    return common.stamped(result["stdout"], MARKER) - result["started"]


def run(args) -> list:
    size = sizes(args)
    max_k = max(size["ks"])
    write_stream(args.work, max_k)
    common.owt_like_documents(stream_dir(args.work, max_k) / "tokenizer")  # cached now, outside the timings
    runs = prepare_runs(args.work, max_k, size["ks"], args.smoke)

    def measure(k: int, baseline_repeats: int) -> dict:
        def first_step(side: str) -> float:
            return time_to_first_step(side, runs[side, k], k, args.work, max_k, args.smoke)

        sides = {"ours": lambda: first_step("ours"), "baseline": lambda: first_step("original")}
        return common.alternate(sides, {"ours": size["ours_repeats"], "baseline": baseline_repeats})

    fresh = measure(0, max(size["baseline_repeats"].values()))
    records = []
    for k in size["ks"]:
        resumed = measure(k, size["baseline_repeats"][k])
        record = common.compare(
            "B2", "s to first new step", resumed, better="lower", k=k, tokens_per_step=GLOBAL_BATCH * SEQ_LEN
        )
        record["ours_overhead_s"] = round(record["ours"] - common.median(fresh["ours"]), 3)
        record["baseline_overhead_s"] = round(record["baseline"] - common.median(fresh["baseline"]), 3)
        record["fresh"] = {
            "ours": round(common.median(fresh["ours"]), 3),
            "baseline": round(common.median(fresh["baseline"]), 3),
        }
        record["met"] = record["ours_overhead_s"] <= TARGET_OURS_S and (k != max_k or record["ratio"] >= TARGET_RATIO)
        records.append(common.emit(record))
    return records


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        common.offline()
        if child_main(sys.argv[2:]):
            os._exit(0)  # measured: no interpreter teardown to wait for
    else:
        common.standalone(run, __doc__.splitlines()[0])
