"""The parity harness (`python -m parc.parity`): our trainer vs `transformers.Trainer` run as Parc ran it.

Both sides train the same model (same initial weights: ours builds it, the reference gets a copy) on the same
sequences in the same order (`BatchPlan` steps 1..N), and the per-step losses are printed side by side,
ending with `max relative loss difference: <x>` (exit status 1 when it exceeds `tolerance=`, default 1e-4).

Ours is `parc.training.trainer.Trainer.train_step`, exactly as `python -m parc.train` builds it (fast paths included;
pass `arch.fast_path=reference` to compare the training loop alone). The reference is the original
~90-line script's `Trainer` (see `reference_arguments`): `DataCollatorForLanguageModeling(mlm=False)` with
pad = eos, TrainingArguments defaults unless the script set them, the sequences streamed through an
IterableDataset (the original streamed, so the Trainer never shuffles), and the model on transformers' own
code paths. `steps` and `tolerance` belong to this command; everything else is a training override and
defaults to `experiment=demo` (tiny models). The warmup is scaled to the shorter run (20 of 200 demo steps
-> 5 of 50) unless `trainer.warmup_steps=` is given.

The installed transformers is 5.x; the script ran on 4.50-4.57 (it passes `seed=` to the collator). Where
those Trainers differ from 5.x (the loss normalisation: see `parc.training.loss` and `trainer.loss_normalization=hf4`;
for Mamba in 4.50-4.52, weight decay on the per-layer RMSNorm weights) this harness can only hold us to the
installed Trainer configured as the script, so it refuses `hf4`.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from parc.config import compose
from parc.errors import ParcError
from parc.training.lr_neox import warmup_iters
from parc.training.runconfig import validate

DEFAULT_STEPS = 50
DEFAULT_TOLERANCE = 1e-4


@dataclass
class Side:
    """One trainer's record of a run: per step (1-based) loss, learning rate used, pre-clipping grad norm."""

    losses: List[float] = field(default_factory=list)
    lrs: List[float] = field(default_factory=list)
    grad_norms: List[Optional[float]] = field(default_factory=list)
    decayed: frozenset = frozenset()  # parameter names in the weight-decay group
    described: str = ""
    started: float = 0.0  # time.perf_counter() as training began
    step_ends: List[float] = field(default_factory=list)  # time.perf_counter() as each step finished

    def tokens_per_s(self, tokens_per_step: int, skip: int) -> float:
        """Throughput over the steps after the first `skip` (warm-up: allocation, first-call overheads)."""
        ends = self.step_ends[skip - 1 :] if skip else [self.started, *self.step_ends]
        return (len(ends) - 1) * tokens_per_step / (ends[-1] - ends[0])


def with_default_experiment(overrides: List[str]) -> List[str]:
    """The training overrides, with experiment=demo unless one is named (the harness's tiny default)."""
    named = any(arg.startswith("experiment=") for arg in overrides)
    return list(overrides) if named else ["experiment=demo", *overrides]


def parity_config(overrides: List[str], steps: int):
    """The run's config shortened to `steps`, the warmup scaled with it unless set explicitly."""
    full = compose(overrides)
    extra = [f"trainer.max_steps={steps}"]
    if full.trainer.warmup_steps is not None and not any(arg.startswith("trainer.warmup_steps=") for arg in overrides):
        warmup = full.trainer.warmup_steps * steps / full.trainer.max_steps  # (a warmup_fraction scales itself)
        extra.append(f"trainer.warmup_steps={max(1, round(warmup)) if full.trainer.warmup_steps else 0}")
    cfg = compose([*overrides, *extra])
    validate(cfg)
    for key, installed in (("loss_normalization", "tokens"), ("weight_decay_rule", "transformers")):
        if cfg.trainer[key] != installed:  # the 4.5x variants; BENCHMARKS.md says how they were checked
            raise ParcError(
                f"trainer.{key}={cfg.trainer[key]} reproduces transformers 4.5x, not the installed "
                f"Trainer this harness runs: compare with trainer.{key}={installed}"
            )
    if not cfg.trainer.ignore_eos_labels:
        raise ParcError(
            "trainer.ignore_eos_labels=false: the Parc script's collator ignores eos labels; "
            "compare with trainer.ignore_eos_labels=true"
        )
    return cfg


def run_ours(cfg, batches, tokenizer_dir) -> tuple[Side, Dict[str, torch.Tensor]]:
    """Steps 1..max_steps through `parc.training.trainer.Trainer.train_step`; also returns the initial weights."""
    from parc.training.trainer import Trainer, make_accelerator

    accelerator = make_accelerator(cfg)
    trainer = Trainer(cfg, accelerator, batches, tokenizer_dir, start=None)
    model = accelerator.unwrap_model(trainer.model)
    initial = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    side = Side(
        decayed=frozenset(
            names[id(p)] for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]
        ),
        described=f"parc.training.trainer ({trainer.fast_path})",
    )
    side.started = time.perf_counter()
    for step in range(1, cfg.trainer.max_steps + 1):
        row = trainer.train_step(step)
        side.step_ends.append(time.perf_counter())
        side.losses.append(row["loss"])
        side.lrs.append(row["lr"])
        side.grad_norms.append(row["grad_norm"])
    accelerator.end_training()
    _reset_accelerate()  # the reference builds its own Accelerator in this process
    return side, initial


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class PlannedSequences(torch.utils.data.IterableDataset):
    """The sequences of steps 1..N in batch order, streamed: what the original's streamed dataset yielded."""

    def __init__(self, batches, steps: int):
        self.batches, self.steps = batches, steps

    def __iter__(self):
        for step in range(1, self.steps + 1):
            for row in self.batches.batch(step):
                yield {"input_ids": torch.from_numpy(row)}


def reference_arguments(cfg, output_dir: str, accumulation: int):
    """TrainingArguments as the Parc script set them (defaults otherwise), scaled to this run."""
    from transformers import TrainingArguments

    t = cfg.trainer
    use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        warmup_steps=round(warmup_iters(t)),  # as build_scheduler rounds a warmup_fraction
        lr_scheduler_type=t.lr_schedule if t.lr_schedule != "constant" else "constant_with_warmup",
        max_steps=t.max_steps,
        max_grad_norm=t.grad_clip,
        adam_beta1=t.betas[0],
        adam_beta2=t.betas[1],
        adam_epsilon=t.eps,
        # transformers 4.5x's default; 5.x defaults to "adamw_torch_fused" with torch >= 2.8.
        optim="adamw_torch",
        fp16=False,
        bf16=t.precision == "bf16",
        seed=cfg.seed,
        use_cpu=use_cpu,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def run_reference(cfg, batches, tokenizer_dir, initial: Dict[str, torch.Tensor], accumulation: int) -> Side:
    """The same steps through `transformers.Trainer`, configured as the original script."""
    from transformers import DataCollatorForLanguageModeling, PrinterCallback, Trainer, TrainerCallback

    from parc import archs
    from parc.data.tokenizer import load_saved_tokenizer

    tokenizer = load_saved_tokenizer(tokenizer_dir)
    tokenizer.pad_token = tokenizer.eos_token  # as the script: labels equal to eos/pad are ignored by the loss
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, cfg.seed)  # transformers' own forward paths
    same_init = all(torch.equal(model.state_dict()[k], v) for k, v in initial.items())
    model.load_state_dict(initial)
    side = Side(
        described="transformers.Trainer (reference forward; "
        f"initial weights {'bit-identical' if same_init else 'copied: the rebuilt init differed'})"
    )

    class RecordingTrainer(Trainer):
        """Records what each optimizer step used; the sum of its micro-batches' losses is the step's loss."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            step = self.state.global_step + 1
            if len(side.losses) < step:
                side.losses.append(0.0)
                side.lrs.append(self.optimizer.param_groups[0]["lr"])
            side.losses[step - 1] += float(loss)
            return loss

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            side.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            side.step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="parc-parity-") as output_dir:
        trainer = RecordingTrainer(
            model=model,
            args=reference_arguments(cfg, output_dir, accumulation),
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False, seed=cfg.seed),
            train_dataset=PlannedSequences(batches, cfg.trainer.max_steps),
            processing_class=tokenizer,
            callbacks=[StepClock()],
        )
        trainer.remove_callback(PrinterCallback)  # its per-step dicts would interleave with our table
        trainer.train()
    _reset_accelerate()  # leave the process as we found it (benchmarks run both sides repeatedly)
    names = {id(p): n for n, p in model.named_parameters()}
    side.decayed = frozenset(
        names[id(p)] for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]
    )
    norms = {row["step"]: row.get("grad_norm") for row in trainer.state.log_history if "loss" in row}
    side.grad_norms = [norms.get(step) for step in range(1, cfg.trainer.max_steps + 1)]
    return side


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def report(ours: Side, reference: Side, tolerance: float) -> tuple[str, float]:
    """The side-by-side table and the verdict; returns (text, max relative loss difference)."""
    if len(ours.losses) != len(reference.losses) or not ours.losses:
        raise RuntimeError(f"compared {len(ours.losses)} against {len(reference.losses)} steps")
    lines = [
        f"ours:      {ours.described}",
        f"reference: {reference.described}",
        f"{'step':>5} {'loss (ours)':>13} {'loss (HF)':>13} {'rel diff':>9} {'lr (ours)':>10} {'lr (HF)':>10}"
        f" {'grad norm (ours)':>16} {'grad norm (HF)':>14}",
    ]
    worst = 0.0
    for step, (a, b) in enumerate(zip(ours.losses, reference.losses), start=1):
        diff = relative(a, b)
        worst = max(worst, diff)
        ga, gb = ours.grad_norms[step - 1], reference.grad_norms[step - 1]
        lines.append(
            f"{step:>5} {a:>13.7f} {b:>13.7f} {diff:>9.2e} {ours.lrs[step - 1]:>10.3e} "
            f"{reference.lrs[step - 1]:>10.3e} {_num(ga):>16} {_num(gb):>14}"
        )
    lr_worst = max(relative(a, b) if b else abs(a) for a, b in zip(ours.lrs, reference.lrs))
    lines.append(f"learning rates: {'identical' if lr_worst == 0 else f'max relative difference {lr_worst:.2e}'}")
    only_ours, only_ref = sorted(ours.decayed - reference.decayed), sorted(reference.decayed - ours.decayed)
    lines.append(
        "weight-decay groups: "
        + (
            "identical"
            if not (only_ours or only_ref)
            else f"decayed only by ours: {only_ours or 'none'}; only by the reference: {only_ref or 'none'}"
        )
        + f" ({len(ours.decayed)} decayed tensors)"
    )
    verdict = "within" if worst <= tolerance else "EXCEEDS"
    lines.append(f"parity over {len(ours.losses)} steps: {verdict} tolerance {tolerance:g}")
    lines.append(f"max relative loss difference: {worst:.3e}")
    return "\n".join(lines), worst


def _num(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"


def run_parity(overrides: List[str], steps: int = DEFAULT_STEPS, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Run both sides for `steps` steps, print the comparison; returns whether it is within `tolerance`."""
    from parc.data.prepare import ensure_prepared
    from parc.data.stream import BatchPlan
    from parc.training.runconfig import Plan

    if steps < 1 or not tolerance >= 0:
        raise ParcError(f"steps={steps} tolerance={tolerance}: steps must be >= 1 and tolerance >= 0")
    cfg = parity_config(with_default_experiment(overrides), steps)
    stream = ensure_prepared(cfg)
    batches = BatchPlan.from_config(cfg, stream)
    plan = Plan.build(cfg, world_size=1)
    print(
        f"parity: {cfg.arch.name} ({cfg.arch.size}), {plan.max_steps} steps of {plan.global_batch_size} x "
        f"{plan.seq_len} tokens = micro-batch {plan.micro_batch_size} x accumulation {plan.accumulation}, "
        f"lr {cfg.trainer.lr} {cfg.trainer.lr_schedule}, warmup {warmup_iters(cfg.trainer):g}, seed {cfg.seed}",
        flush=True,
    )
    ours, initial = run_ours(cfg, batches, stream.tokenizer_dir)
    reference = run_reference(cfg, batches, stream.tokenizer_dir, initial, plan.accumulation)
    text, worst = report(ours, reference, tolerance)
    print(text, flush=True)
    return worst <= tolerance
