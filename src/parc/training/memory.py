"""Memory per device of a planned run (for `dry_run=true`): weights, gradients, Adam state, activations.

The model trains in fp32 (fp16/bf16 are autocast: fp32 master weights and gradients, 16-bit activations
and a 16-bit copy of each weight while it is used). Per parameter: 4 bytes of weights, 4 of gradients,
8 of AdamW state (exp_avg, exp_avg_sq), + 2 for the autocast copies. Under `trainer.strategy=fsdp` the
first three are split over the world size, and the block being computed is gathered whole (counted twice:
the current one and the one prefetched).

Activations, per micro-batch of b sequences of s tokens, d wide, L layers: 34 s b d bytes per layer in 16
bits (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1,
with fused/flash attention, which drops their 5 a s^2 b term), doubled in fp32; plus the fp32 logits and
their gradient, 8 s b V. It is a transformer's count, a rough guide for Mamba and RWKV; allocator
fragmentation, CUDA context and communication buffers come on top, so treat the total as a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICE_BYTES = 80e9  # an 80 GB device (A100/H100 80GB)
GB = 1e9


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    strategy: str
    world_size: int

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def estimate(
    n_params: int,
    config,
    micro_batch: int,
    seq_len: int,
    precision: str,
    strategy: str,
    world_size: int,
    largest_block: int = 0,
) -> MemoryEstimate:
    """Bytes per device for `n_params` parameters and one micro-batch of `micro_batch` x `seq_len` tokens."""
    half = precision in ("fp16", "bf16")
    if strategy == "fsdp" and world_size > 1:  # shards, plus two whole blocks (current + prefetched) gathered
        shards, weights = world_size, 4 * n_params / world_size + 2 * largest_block * (2 if half else 4)
    else:  # every weight whole, plus its 16-bit autocast copy
        shards, weights = 1, 4 * n_params + (2 * n_params if half else 0)
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    per_layer = 34 * seq_len * micro_batch * d * (1 if half else 2)
    activations = layers * per_layer + 8 * seq_len * micro_batch * vocab
    return MemoryEstimate(weights, 4 * n_params / shards, 8 * n_params / shards, activations, strategy, world_size)


def largest_block_parameters(model) -> int:
    """Parameters of the biggest repeated block (FSDP's unit), or 0 for a model without blocks."""
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    sizes = [sum(p.numel() for p in m.parameters()) for m in model.modules() if type(m).__name__ in blocks]
    return max(sizes, default=0)


def describe(cfg, model, world_size: int) -> str:
    """One line for the dry-run plan: the estimate under the chosen strategy, and what to do if it does not fit."""
    from parc.archs import count_parameters

    t = cfg.trainer
    n_params, block = count_parameters(model), largest_block_parameters(model)

    def under(strategy: str, world: int, micro_batch: int = t.micro_batch_size) -> MemoryEstimate:
        return estimate(n_params, model.config, micro_batch, cfg.data.seq_len, t.precision, strategy, world, block)

    chosen = under(t.strategy, world_size)
    line = (
        f"~{chosen.total / GB:.1f} GB ({t.strategy}, {world_size} process(es)): weights {chosen.weights / GB:.1f} + "
        f"grads {chosen.gradients / GB:.1f} + Adam {chosen.optimizer / GB:.1f} + activations "
        f"{chosen.activations / GB:.1f} (micro-batch {t.micro_batch_size})"
    )
    smaller = [m for m in range(t.micro_batch_size - 1, 0, -1) if t.global_batch_size % (m * world_size) == 0]
    return line + advice(chosen, under, t.micro_batch_size, world_size, smaller)


def advice(chosen: MemoryEstimate, under, micro_batch: int, world_size: int, smaller) -> str:
    """Fits; or the largest (valid) smaller micro-batch that fits; or FSDP, on how many devices."""
    if chosen.total <= DEVICE_BYTES:
        return "; fits an 80 GB device"
    fitting = [m for m in smaller if under(chosen.strategy, world_size, m).total <= DEVICE_BYTES]
    if fitting:
        return (
            f"; does NOT fit an 80 GB device: trainer.micro_batch_size={fitting[0]} would "
            f"(the accumulation grows, the global batch stays)"
        )
    worlds = (2, 4, 8, 16, 32, 64, 128, 256, 512)
    needed = next(((w, m) for m in (micro_batch, 1) for w in worlds if under("fsdp", w, m).total <= DEVICE_BYTES), None)
    where = f" on >= {needed[0]} devices with trainer.micro_batch_size={needed[1]}" if needed else ""
    prefix = (
        "; does NOT fit an 80 GB device under DDP" if chosen.strategy == "ddp" else "; does NOT fit an 80 GB device"
    )
    return f"{prefix}: use trainer.strategy=fsdp{where}"
