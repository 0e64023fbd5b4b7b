"""The training loop: Accelerate (1 or N processes), accumulation, clipping, schedule, metrics, checkpoints,
Hub pushes and preemption. `train(cfg)` is the whole run; `Trainer.train_step` is one optimizer update."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list

from parc import archs
from parc.config import RUN_CONFIG
from parc.errors import EXIT_DONE, EXIT_PREEMPTED, ParcError
from parc.store import checkpoint, diskplan, iofaults
from parc.store.fileio import atomic_write_json
from parc.training import branch as branching
from parc.training import initfrom, resume, strategy
from parc.training.loss import normalization, step_labels
from parc.training.metrics import RunReporter, format_plan
from parc.training.optim import build_optimizer, build_scheduler
from parc.training.runconfig import Plan, portable_config, write_run_config
from parc.training.source import StateSource, as_source

CANARY_FILE = "canaries.json"  # the run's canaries: spec, every planted copy, the tokens of canaries and references


class PreemptionFlag:
    """SIGUSR1 (Slurm's warning before the time limit), SIGUSR2 (submitit's) and SIGTERM (preemption, requeue)
    ask for a clean stop: finish the step, save, then exit — or hand over to the handler that was there
    before (submitit's requeues the job), now that nothing will be lost."""

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)

    def __init__(self):
        self.signal: Optional[int] = None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame):
        self.signal = signum

    def raised_anywhere(self, accelerator: Accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)  # every rank stops at the same step

    def hand_over(self) -> None:
        """Run the handler this signal had before us, if it was a Python one (e.g. submitit's requeue)."""
        previous = self.previous.get(self.signal)
        if callable(previous):
            previous(self.signal, None)


def make_accelerator(cfg) -> Accelerator:
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ParcError("device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    state = PartialState(cpu=use_cpu)  # initialises the process group: the world size decides accumulation
    plan = Plan.build(cfg, world_size=state.num_processes)
    if cfg.trainer.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(
        cpu=use_cpu, gradient_accumulation_steps=plan.accumulation, **strategy.accelerator_options(cfg.trainer, use_cpu)
    )
    strategy.enable_fsdp(accelerator, cfg.trainer)
    return accelerator


class Trainer:
    def __init__(
        self,
        cfg,
        accelerator: Accelerator,
        batches,
        tokenizer_dir: Path,
        start: Optional[Path],
        init: Optional[initfrom.InitSource] = None,
        branch: Optional[StateSource] = None,
    ):
        self.cfg, self.accelerator, self.batches, self.tokenizer_dir = cfg, accelerator, batches, tokenizer_dir
        self.plan = Plan.build(cfg, accelerator.num_processes)
        self.output_dir = Path(self.plan.output_dir)
        self.spec = archs.get_spec(cfg.arch.name)
        model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed)  # set_seed(seed) + from_config
        self.fast_path = self.spec.apply_fast_path(model, cfg.arch.fast_path, accelerator.device)
        self.flops_per_token = self.spec.flops_per_token(model.config, cfg.data.seq_len)
        self.n_params = archs.count_parameters(model)
        self.step, self.tokens, optimizer_state = 0, 0, None
        self.init_record = init.record if init is not None else None  # a branched run: where its weights came from
        self.branch_record = None  # an exact branch (branch_from=): its parent checkpoint, step and intervention
        # Which directory output_dir is: a save refuses to write into the empty mount point of an unmounted disk.
        self.output_dir_identity = iofaults.directory_identity(self.output_dir) if self.output_dir.is_dir() else None
        optimizer = build_optimizer(model, cfg.trainer, accelerator.device)
        self.scheduler = build_scheduler(optimizer, cfg.trainer)
        # resume (this run's checkpoint, or resume=neox:) or an exact branch (the parent's full training state, this
        # run's data after step k): both load through one StateSource (a Parc checkpoint or a raw GPT-NeoX one)
        source = branch if branch is not None else as_source(start)
        if source is not None:
            optimizer_state = self._restore(source, model, optimizer, branch=branch is not None)
        elif init is not None:  # a new run from another run's weights: optimizer, schedule and step start fresh
            init.load_weights(model)
        if cfg.arch.compile:
            model = torch.compile(model)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        if optimizer_state is not None:  # after prepare: under FSDP the optimizer holds the shards
            strategy.load_optimizer_state(accelerator, self.model, self.optimizer, optimizer_state)

    def identity(self) -> dict:
        """What a checkpoint must share with this run to be continued by it."""
        return {
            "data": self.batches.fingerprint(),
            "seed": self.cfg.seed,
            "recipe": resume.recipe(self.cfg.trainer),
            "model_config": archs.hf_config(self.cfg.arch, self.cfg.data.vocab_size).to_diff_dict(),
            # a branched run stays one when resumed without init_from=; another init_from= is refused
            "init_from": initfrom.portable(self.cfg.init_from) or (self.init_record or {}).get("source"),
            "branch_from": initfrom.portable(self.cfg.get("branch_from")) or (self.branch_record or {}).get("source"),
        }

    def _restore(self, source: StateSource, model, optimizer, branch: bool = False) -> dict:
        """Weights, schedule, RNG and counters from `source` (this run's checkpoint or a raw NeoX one, or with
        branch=True the parent checkpoint of an exact branch); returns the optimizer state to load after prepare."""
        state = source.load(self, model, optimizer, branch)  # checked against this run; the weights are in model
        self.scheduler.load_state_dict(state["scheduler"])
        if state["rng"] is not None:
            checkpoint.set_rng_state(state["rng"])
        self.step, self.tokens = state["trainer"]["step"], state["trainer"]["tokens"]
        self.init_record = state["trainer"].get("init_from")
        self.branch_record = state["trainer"].get("branch")
        if branch:
            change = self.batches.edits.intervention if self.batches.edits is not None else None
            self.branch_record = {**self.branch_record, "intervention": change.record() if change else None}
        return state["optimizer"]

    def lineage(self) -> dict:
        """What every metrics row says about where this run's state and data came from."""
        out = {}
        if self.init_record is not None:
            out["init_from"] = self.init_record["source"]
        if self.branch_record is not None:
            out.update(branch_from=self.branch_record["source"], branch_step=self.branch_record["step"])
        change = self.batches.edits.intervention if getattr(self.batches, "edits", None) is not None else None
        if change is not None:
            out["intervention"] = change.name
        return out

    def train_step(self, step: int) -> dict:
        """One optimizer update on the global batch of `step` (this rank's share, in micro-batches)."""
        started = time.perf_counter()
        rows = torch.from_numpy(
            self.batches.rank_batch(step, self.accelerator.process_index, self.accelerator.num_processes)
        )
        labels = step_labels(
            rows, self.batches.stream.manifest["tokenizer"].get("eos_token_id"), self.cfg.trainer.ignore_eos_labels
        )
        norm = normalization(
            self.cfg.trainer.loss_normalization, self.cfg.arch.name, labels, self.plan.accumulation, self.accelerator
        )  # the Trainer's: the mean over the global batch's predicted tokens
        micro_losses, grad_norm = [], None
        for ids, micro_labels in zip(rows.chunk(self.plan.accumulation), labels.chunk(self.plan.accumulation)):
            ids, micro_labels = ids.to(self.accelerator.device), micro_labels.to(self.accelerator.device)
            with self.accelerator.accumulate(self.model):
                loss = self.model(input_ids=ids, labels=micro_labels, **norm.model_kwargs).loss
                self.accelerator.backward(loss * norm.backward_scale)  # Accelerate divides by the accumulation
                if self.accelerator.sync_gradients and self.cfg.trainer.grad_clip > 0:
                    grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.grad_clip)
                self.optimizer.step()  # Accelerate skips it until the last micro-batch
                self.optimizer.zero_grad()
            micro_losses.append(loss.detach())
        lr = self.scheduler.get_last_lr()[0]  # the rate this update used (warmup starts at 0, as the Trainer)
        if not self.accelerator.optimizer_step_was_skipped:  # fp16 overflow: DeepSpeed keeps the LR too
            self.scheduler.step()
        loss = self.accelerator.reduce(torch.stack(micro_losses).sum() * norm.report_scale, "sum").item()
        self.step, self.tokens = step, self.tokens + self.plan.tokens_per_step
        seconds = time.perf_counter() - started
        tokens_per_s = self.plan.tokens_per_step / seconds
        return {
            "step": step,
            "loss": loss,
            "lr": lr,
            "tokens": self.tokens,
            "time": time.time(),
            "batch_hash": self.batches.batch_hash(step),
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "step_seconds": seconds,
            "tokens_per_s": tokens_per_s,
            "mfu": self._mfu(tokens_per_s),
        }

    def _mfu(self, tokens_per_s: float) -> Optional[float]:
        from parc.training.perf import mfu

        per_device = tokens_per_s / self.accelerator.num_processes
        return mfu(self.flops_per_token, per_device, self.accelerator.device, self.cfg.trainer.precision)

    def save(self, scheduled: bool, batch_hashes: dict) -> Path:
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "world_size": self.accelerator.num_processes,
            "micro_batch_size": self.plan.micro_batch_size,
            "identity": self.identity(),
            "config": portable_config(self.cfg),
            "versions": library_versions(),
            "recent_batch_hashes": batch_hashes,
            "schedule": self.plan.checkpoint_steps,
            "init_from": self.init_record,
            "branch": self.branch_record,
            "data_prefix": self.batches.prefix(self.step),
        }
        if self.output_dir_identity is not None:
            iofaults.check_same_directory(self.output_dir, self.output_dir_identity, f"saving checkpoint-{self.step}")
        with_train_state = self.cfg.checkpoint.save_train_state or not scheduled
        gathered = strategy.gathered_states(
            self.accelerator, self.model, self.optimizer, with_train_state
        )  # FSDP: collective
        return checkpoint.save(
            self.accelerator,
            self.output_dir,
            self.step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.tokenizer_dir,
            state,
            scheduled,
            with_train_state=with_train_state,
            gathered=gathered,
        )

    def fit(self) -> int:
        """Train from self.step to max_steps. Returns the exit code (0, or EXIT_PREEMPTED)."""
        cfg, acc, plan = self.cfg, self.accelerator, self.plan
        schedule = set(plan.checkpoint_steps)
        publisher = self._publisher()
        preemption = PreemptionFlag()
        reporter = RunReporter(cfg, self.output_dir, self.step, plan.max_steps) if acc.is_main_process else None
        hashes, finished, lineage = {}, False, self.lineage()
        try:
            if self.step in schedule and not checkpoint.is_complete(
                checkpoint.checkpoint_path(self.output_dir, self.step)
            ):
                self._checkpoint(publisher, scheduled=True, hashes=hashes)  # the seed checkpoint, step 0
            for step in range(self.step + 1, plan.max_steps + 1):
                row = self.train_step(step)
                hashes[step] = row["batch_hash"]
                row.update(lineage)
                if reporter and (step % cfg.trainer.log_every == 0 or step == plan.max_steps):
                    reporter.log(row)
                if step in schedule:
                    self._checkpoint(publisher, scheduled=True, hashes=hashes)
                    hashes = {}
                if preemption.raised_anywhere(acc) and step < plan.max_steps:
                    if step not in schedule:
                        self._checkpoint(publisher, scheduled=False, hashes=hashes)
                    if reporter:
                        reporter.note(f"signal {preemption.signal}: saved checkpoint-{step}; exiting for requeue")
                        reporter.close()
                        reporter = None
                    preemption.hand_over()
                    return EXIT_PREEMPTED
            finished = True
        finally:
            if reporter:
                reporter.close()
            if publisher is not None:
                self._close_publisher(publisher, plan.max_steps if finished else None, raise_errors=finished)
        return EXIT_DONE

    @staticmethod
    def _close_publisher(publisher, final_step, raise_errors: bool) -> None:
        """Wait for pending pushes; after a failure or preemption a push error must not hide the first cause."""
        try:
            publisher.close(final_step=final_step)
        except (ParcError, OSError) as exc:
            if raise_errors:
                raise
            logging.getLogger("parc.hub.publisher").error("%s", exc)

    def _checkpoint(self, publisher, scheduled: bool, hashes: dict) -> None:
        path = self.save(scheduled, hashes)
        if self.accelerator.is_main_process:
            if publisher is not None and scheduled:
                publisher.submit(self.step, path)
            protect = publisher.pending_steps() if publisher is not None else set()
            with iofaults.DiskWrites(
                f"pruning old training states in {self.output_dir}",
                self.output_dir,
                then=lambda: checkpoint.resume_hint(self.output_dir),
            ):
                checkpoint.prune_train_states(self.output_dir, self.cfg.checkpoint.keep_train_states, protect)
        self.accelerator.wait_for_everyone()

    def _publisher(self):
        if not self.cfg.hub.repo_id:
            return None
        from parc.hub.publisher import Publisher

        publisher = Publisher.from_config(self.cfg, self.output_dir, self.accelerator.is_main_process)
        if publisher is not None:
            publisher.start()
        return publisher

    def describe(self) -> str:
        plan = self.plan
        return format_plan(
            {
                "architecture": f"{self.cfg.arch.name} ({self.cfg.arch.size}), {self.n_params} parameters",
                "fast path": self.fast_path,
                "world size": plan.world_size,
                "strategy": f"{self.cfg.trainer.strategy} ({type(self.model).__name__})",
                "batch": f"{plan.global_batch_size} sequences = {plan.micro_batch_size} micro-batch x "
                f"{plan.accumulation} accumulation x {plan.world_size} processes",
                "tokens per step": plan.tokens_per_step,
                "total tokens": plan.total_tokens,
                "steps": f"{self.step} done of {plan.max_steps}",
                "FLOPs per token": f"{self.flops_per_token:.4g}",
                "checkpoints": describe_steps(plan.checkpoint_steps),
                "output dir": plan.output_dir,
            }
        )


def describe_steps(steps) -> str:
    if len(steps) <= 12:
        return ", ".join(map(str, steps))
    return f"{len(steps)} steps: {', '.join(map(str, steps[:8]))} ... {', '.join(map(str, steps[-2:]))}"


def library_versions() -> dict:
    import sys

    import accelerate
    import transformers

    import parc

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "numpy": np.__version__,
        "parc": parc.__version__,
    }


def train(cfg) -> int:
    """The whole run: set up, resume, train, checkpoint. Returns the process exit code."""
    from transformers.utils import logging as hf_logging

    from parc.data.prepare import ensure_prepared
    from parc.data.stream import BatchPlan

    hf_logging.disable_progress_bar()  # the run has its own progress bar; per-save shard bars are noise
    branching.settle(cfg)  # a bare branch_from=checkpoint-k: the branch's output_dir, before anything uses it
    accelerator = make_accelerator(cfg)
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    if accelerator.is_main_process:
        initfrom.resolve(cfg, output_dir, download=False)  # refuse an init_from= that cannot be used
        branching.resolve(cfg, output_dir, download=False)  # and a branch_from= that cannot be used
        resume.find_start(cfg, output_dir, allow_download=False)  # and an impossible resume, before any write
    with accelerator.main_process_first():  # rank 0 prepares the demo data first; the others then open it
        stream = ensure_prepared(cfg)
    start = resume.find_start(cfg, output_dir) if accelerator.is_main_process else None  # may download
    start = broadcast_object_list([start])[0]  # every rank resumes from what rank 0 found (or fetched)
    init = initfrom.resolve(cfg, output_dir) if start is None and accelerator.is_main_process else None
    init = broadcast_object_list([init])[0]  # a new run from another run's weights (init_from=), verified
    branch = branching.resolve(cfg, output_dir) if start is None and accelerator.is_main_process else None
    branch = broadcast_object_list([branch])[0]  # an exact branch (branch_from=): the parent's checkpoint, verified
    branching.fix_step(cfg, branch, start)  # intervention.step = k, before the plan and config.yaml read it
    batches = BatchPlan.from_config(cfg, stream)
    if accelerator.is_main_process:
        if resume.starts_over(cfg):
            resume.clear_run(output_dir)
    created = not output_dir.exists()
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    try:  # the checkpoint's compatibility (data, recipe, a branch's prefix) is checked here, before config.yaml
        trainer = Trainer(cfg, accelerator, batches, stream.tokenizer_dir, start, init, branch)
    except ParcError:
        if created and accelerator.is_main_process and not any(output_dir.iterdir()):
            output_dir.rmdir()  # a refusal leaves nothing behind
        raise
    if accelerator.is_main_process:
        write_run_files(cfg, output_dir, stream, batches)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(f"parc: {describe_origin(cfg, start, init, branch)}\n{trainer.describe()}", flush=True)
        diskplan.warn_if_short(
            cfg, accelerator.unwrap_model(trainer.model), trainer.plan, stream.tokenizer_dir, trainer.step
        )
    code = trainer.fit()
    # Tear down in this order. Without end_training, 2-process gloo runs may abort at exit. And the DDP
    # model must be freed while the process group is still registered: if the wrapper's Reducer holds the
    # last reference, freeing it destroys the group, which joins gloo's worker thread while holding the
    # GIL -- a deadlock whenever that thread is still releasing a finished all-reduce's tensors (seen in
    # about 1 run in 5 of a 2-process CPU run). The barrier lets the workers finish before the group goes.
    del trainer
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return code


def write_run_files(cfg, output_dir: Path, stream, batches) -> None:
    """config.yaml (portable), where the stream lies on this machine, and the canary manifest (if any)."""
    from parc.data.location import record_stream

    with iofaults.DiskWrites(
        f"writing {output_dir / RUN_CONFIG}",
        output_dir,
        then="run the same command again",
        elsewhere="choose another output_dir=",
    ):
        write_run_config(output_dir, cfg)
        record_stream(output_dir, stream)  # config.yaml is portable; this says where the data lies here
        if batches.edits is not None and batches.edits.canaries is not None:
            atomic_write_json(output_dir / CANARY_FILE, batches.edits.canary_record(batches))


def describe_origin(cfg, start, init, branch) -> str:
    """Where the run's weights and state come from, in the words of its first log line."""
    if branch is not None:
        return (
            f"branching from {branch.record['source']} at step {branch.record['step']} (weights, optimizer, "
            f"schedule, RNG) with intervention={cfg.intervention.name}"
        )
    if init is not None:
        return f"starting a new run from the weights of {init.record['source']}"
    return f"resuming from {getattr(start, 'source', start)}" if start is not None else "starting from scratch"


def check_writable(output_dir: Path) -> None:
    """Refuse an output dir we cannot create or write, before anything is written anywhere."""
    import tempfile

    probe = Path(output_dir).absolute()
    while not probe.exists():
        probe = probe.parent
    try:  # os.access says yes to root everywhere; only a real write tells (the probe file is removed)
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".parc-write-probe-"):
            pass
    except OSError:
        raise ParcError(
            f"cannot write output_dir {output_dir} ({probe} is not a writable directory); "
            f"choose another output_dir= or fix its permissions"
        ) from None
