"""AdamW with the Hugging Face Trainer's weight-decay rule, and the warmup + decay LR schedule (as Parc trained)."""

from __future__ import annotations

import torch
from transformers import Trainer, get_scheduler

from parc.training.lr_neox import neox_scheduler, warmup_iters


def decay_parameter_names(model: torch.nn.Module, rule: str = "transformers") -> set:
    """The Trainer's rule, called rather than copied so it stays the same: no decay for biases and norms.

    `transformers` is the installed Trainer's (4.53 and later: nn.LayerNorm modules and names matching
    bias / layernorm / rmsnorm / `norm` patterns). `hf4.50` is transformers 4.50-4.52's, the oldest the Parc
    script runs on: the same helper with only bias / layernorm / rmsnorm names, under which Mamba's per-layer
    RMSNorm weights (named `layers.N.norm`) are decayed. Pythia's and RWKV's groups are the same under both.
    """
    if rule == "neox":
        return neox_decay_parameter_names(model)
    if rule == "hf4.50":
        from transformers.trainer_pt_utils import get_parameter_names

        return set(get_parameter_names(model, [torch.nn.LayerNorm], ["bias", "layernorm", "rmsnorm"]))
    return set(Trainer.get_decay_parameter_names(None, model))


def neox_decay_parameter_names(model: torch.nn.Module) -> set:
    """GPT-NeoX v1.0's `get_params_for_weight_decay_optimization`: every parameter decays except LayerNorm
    parameters and biases (so the embeddings decay). For GPT-NeoX models it selects what the Trainer's rule does."""
    no_decay = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if isinstance(module, torch.nn.LayerNorm) or name == "bias":
                no_decay.add(f"{module_name}.{name}" if module_name else name)
    return {name for name, _ in model.named_parameters()} - no_decay


def build_optimizer(model: torch.nn.Module, trainer_cfg, device: torch.device) -> torch.optim.AdamW:
    decay = decay_parameter_names(model, trainer_cfg.weight_decay_rule)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": trainer_cfg.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=trainer_cfg.lr,
        betas=tuple(trainer_cfg.betas),
        eps=trainer_cfg.eps,
        fused=device.type == "cuda",  # one kernel per step on GPU; CPU keeps the reference (foreach) update
    )


def build_scheduler(optimizer: torch.optim.Optimizer, trainer_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' own schedules: linear warmup from 0, then cosine/linear decay to 0 at max_steps; or NeoX's.
    The warmup is `warmup_iters` (refused when longer than the run), rounded to whole steps for transformers'."""
    if trainer_cfg.lr_schedule == "neox":
        return neox_scheduler(optimizer, trainer_cfg)
    name = {"constant": "constant_with_warmup"}.get(trainer_cfg.lr_schedule, trainer_cfg.lr_schedule)
    return get_scheduler(
        name, optimizer, num_warmup_steps=round(warmup_iters(trainer_cfg)), num_training_steps=trainer_cfg.max_steps
    )


def describe_schedule(trainer_cfg) -> str:
    """The dry run's line: the warmup, and the LR of the first update, the peak, the last and the lowest."""
    t = trainer_cfg
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
    factor = build_scheduler(optimizer, t).lr_lambdas[0]
    lr0, steps = t.lr, t.max_steps  # read once: each DictConfig read costs microseconds
    rates = [lr0 * factor(n) for n in range(steps)]  # update k uses lr(k - 1)
    peak = max(range(len(rates)), key=rates.__getitem__)
    warmup = warmup_iters(t)
    how = f"{t.warmup_fraction:g} x {t.max_steps}" if t.warmup_fraction is not None else "trainer.warmup_steps"
    floor = f", floor {t.min_lr:g}" if t.lr_schedule == "neox" else ""
    return (
        f"{t.lr_schedule}{floor}, warmup {warmup:g} steps ({how}); lr at update 1 {rates[0]:.4g}, "
        f"peak {rates[peak]:.4g} (update {peak + 1}), last {rates[-1]:.4g}, lowest {min(rates):.4g}"
    )
