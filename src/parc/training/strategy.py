"""How the model is spread over processes and which precision it trains in: `trainer.strategy`, `trainer.precision`.

- ``ddp`` (default): every process holds the whole model, gradients are all-reduced (Accelerate's DDP).
- ``fsdp``: FSDP2 (`torch.distributed.fsdp.fully_shard`) through Accelerate, full shard
  (reshard_after_forward), one unit per transformer block (the model's `_no_split_modules`): weights,
  gradients and Adam state are split over the processes. Accelerate 1.15 turns FSDP on only for GPU-like
  device types and silently falls back to DDP for CPU (gloo) processes, although FSDP2 itself runs on gloo;
  `enable_fsdp` sets the distributed type Accelerate would have chosen. (FSDP1 does not: torch 2.13 refuses
  with "Inconsistent compute device and `device_id` on rank 0: cpu vs cpu:0".) With one process there is
  nothing to shard and the run is the plain single-process run.
Checkpoints are the same whatever the strategy: `gathered_states` collects the full weights and a full
optimizer state in `optimizer.state_dict()`'s own layout (parameters numbered in optimizer order), so a run
resumes across strategies and world sizes and `from_pretrained` reads every checkpoint.

fp16 (Pythia's precision) is autocast + torch's GradScaler with NeoX's loss-scale start 2**12 and growth
window 1000 (DeepSpeed's `initial_scale_power`, `loss_scale_window`; its `hysteresis: 2` and
`min_loss_scale: 1` have no GradScaler equivalent). A skipped (overflowed) step does not advance the LR
schedule, as in DeepSpeed. Accelerate ignores fp16 on CPU (it would train in fp32 without saying so), so
Parc refuses it there.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from parc.errors import ParcError

NEOX_INITIAL_LOSS_SCALE = 2.0**12  # "initial_scale_power": 12
NEOX_LOSS_SCALE_WINDOW = 1000  # "loss_scale_window": 1000


def accelerator_options(trainer_cfg, use_cpu: bool) -> dict:
    """Keyword arguments for `Accelerator(...)`: mixed precision, loss scaling, the FSDP plugin."""
    from accelerate.utils import GradScalerKwargs

    precision = trainer_cfg.precision
    if precision == "fp16" and use_cpu:
        raise ParcError(
            "trainer.precision=fp16 needs a CUDA device (Accelerate has no fp16 loss scaling on CPU "
            "and would silently train in fp32): use trainer.precision=bf16 or fp32 on CPU"
        )
    options = {"mixed_precision": precision if precision in ("bf16", "fp16") else "no", "kwargs_handlers": []}
    if precision == "fp16":
        options["kwargs_handlers"].append(
            GradScalerKwargs(init_scale=NEOX_INITIAL_LOSS_SCALE, growth_interval=NEOX_LOSS_SCALE_WINDOW)
        )
    if trainer_cfg.strategy == "fsdp":
        options["fsdp_plugin"] = fsdp_plugin()
    return options


def fsdp_plugin():
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=True,  # full shard: parameters are gathered per block and freed again
        auto_wrap_policy="transformer_based_wrap",  # one unit per block of model._no_split_modules
        state_dict_type="FULL_STATE_DICT",
        cpu_ram_efficient_loading=False,  # every rank builds the same seeded model; nothing is broadcast
    )


def enable_fsdp(accelerator, trainer_cfg) -> None:
    """Make Accelerate shard with FSDP on CPU (gloo) processes too, where it would silently use DDP."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    state = accelerator.state
    if (
        trainer_cfg.strategy != "fsdp"
        or accelerator.num_processes == 1
        or state.distributed_type == DistributedType.FSDP
    ):
        return
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise ParcError(
            f"trainer.strategy=fsdp is not supported with Accelerate's {state.distributed_type} "
            f"processes; use trainer.strategy=ddp"
        )
    plugin = fsdp_plugin()
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    # AcceleratorState re-reads the distributed type from PartialState (e.g. in prepare): set it in both
    PartialState().distributed_type = state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.state.distributed_type == DistributedType.FSDP


def gathered_states(
    accelerator, model, optimizer, with_optimizer: bool
) -> Tuple[Optional[torch.nn.Module], Optional[dict]]:
    """Collective under FSDP: (an unsharded copy of the model to save, the full optimizer state dict) on rank 0,
    None elsewhere. (None, None) for the other strategies, whose rank 0 holds both whole."""
    if not is_fsdp(accelerator):
        return None, None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    # torch's own gatherers: Accelerate 1.15's get_state_dict hands back FSDP2's DTensor shards here
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # full tensors, on rank 0 only
    model_state = get_model_state_dict(model, options=options)
    optimizer_state, inner = None, getattr(optimizer, "optimizer", optimizer)
    if with_optimizer and inner.state:
        full = get_optimizer_state_dict(model, inner, options=options)
        optimizer_state = numbered(full) if accelerator.is_main_process else None
    elif with_optimizer:  # before the first update torch would create the state with a zero-gradient step,
        optimizer_state = inner.state_dict()  # advancing Adam's step count; an empty state is the same anywhere
    if not accelerator.is_main_process:
        return None, None
    return unsharded_copy(accelerator.unwrap_model(model), model_state), optimizer_state


def unsharded_copy(model: torch.nn.Module, full_state: dict) -> torch.nn.Module:
    """The same architecture as a plain transformers model holding `full_state` (no copy of the tensors):
    save_pretrained of the FSDP2 module itself trips over its DTensor parameters."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(model.config)
    plain.load_state_dict(full_state, strict=True, assign=True)
    plain.tie_weights()
    return plain


def numbered(full: dict) -> dict:
    """A state dict keyed by parameter names -> `optimizer.state_dict()`'s layout (0, 1, ... in group order)."""
    index, groups = {}, []
    for group in full["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**group, "params": ids})
    return {"state": {index[name]: value for name, value in full["state"].items()}, "param_groups": groups}


def load_optimizer_state(accelerator, model, optimizer, state: dict) -> None:
    """After `accelerator.prepare`: load a numbered full optimizer state into the (sharded) optimizer."""
    if not is_fsdp(accelerator):
        getattr(optimizer, "optimizer", optimizer).load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    inner = getattr(optimizer, "optimizer", optimizer)
    if not state["state"]:  # saved before the first update: nothing to restore
        return
    names = {id(param): name for name, param in model.named_parameters()}
    order = [names[id(param)] for group in inner.param_groups for param in group["params"]]
    by_name = {
        "state": {order[i]: value for i, value in state["state"].items()},
        "param_groups": [{**group, "params": [order[i] for i in group["params"]]} for group in state["param_groups"]],
    }
    set_optimizer_state_dict(model, inner, optim_state_dict=by_name, options=StateDictOptions(full_state_dict=True))
