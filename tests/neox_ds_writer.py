"""Writes a genuine GPT-NeoX-style checkpoint with the real `deepspeed` package on CPU (test helper, run as a script).

    python tests/neox_ds_writer.py <save_dir> <spec.json>

spec: {"hidden": H, "layers": L, "heads": n, "vocab": V, "steps": N, "dp": 2, "lr": ..., "min_lr": ...,
       "warmup_iter": W, "end_iter": T, "seq": s, "micro": m}

A PipelineModule whose layers carry GPT-NeoX v1.0's attribute names and numbering (0 embedding, 1 a function,
2..L+1 transformer layers, L+2 a function, L+3 the final norm, L+4 `final_linear`), ZeRO stage 1, fp16 with
a dynamic loss scale, `dp` data-parallel ranks over gloo (torch.multiprocessing), N `train_batch` steps, then
`save_checkpoint(save_dir, tag="global_stepN", client_state=<what NeoX adds: iteration, args>)` with a NeoX
AnnealingLR-like scheduler whose `state_dict()` DeepSpeed saves. Rank 0 also writes `<save_dir>/captured.pt`:
every parameter's fp32 master and Adam moments as DeepSpeed itself holds them in memory
(`deepspeed.utils.safe_get_full_fp32_param` / `safe_get_full_optimizer_state`), keyed by the module's
parameter names (`"2.attention.dense.weight"`), plus the optimizer's per-group hyperparameters.
The layers' forward is a cheap stand-in (no attention): only the files and the optimizer state matter here.
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch


class EmbeddingPipe(torch.nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(vocab, hidden)

    def forward(self, ids):
        return self.word_embeddings(ids)


class Attention(torch.nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.query_key_value = torch.nn.Linear(hidden, 3 * hidden)
        self.dense = torch.nn.Linear(hidden, hidden)
        self.rotary_emb = torch.nn.Module()
        rotary = int(0.25 * hidden // heads)
        self.rotary_emb.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, rotary, 2).float() / rotary)))

    def forward(self, x):
        return self.dense(self.query_key_value(x)[..., : x.shape[-1]])


class MLP(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.dense_h_to_4h = torch.nn.Linear(hidden, 4 * hidden)
        self.dense_4h_to_h = torch.nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        return self.dense_4h_to_h(torch.nn.functional.gelu(self.dense_h_to_4h(x)))


class ParallelTransformerLayerPipe(torch.nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.input_layernorm = torch.nn.LayerNorm(hidden)
        self.attention = Attention(hidden, heads)
        self.post_attention_layernorm = torch.nn.LayerNorm(hidden)
        self.mlp = MLP(hidden)

    def forward(self, x):  # gpt_j_residual: attention and MLP in parallel
        return x + self.attention(self.input_layernorm(x)) + self.mlp(self.post_attention_layernorm(x))


class NormPipe(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)

    def forward(self, x):
        return self.norm(x)


class ParallelLinearPipe(torch.nn.Module):
    def __init__(self, hidden, vocab):
        super().__init__()
        self.final_linear = torch.nn.Linear(hidden, vocab, bias=False)

    def forward(self, x):
        return self.final_linear(x)


def _transpose(x):  # NeoX's _pre/_post_transformer_block: functions, so no layer file
    return x.transpose(0, 1).contiguous()


class AnnealingLR:
    """The state NeoX's AnnealingLR saves; DeepSpeed steps it only on updates that did not overflow."""

    def __init__(self, optimizer, spec):
        self.optimizer, self.spec, self.num_iters = optimizer, spec, 0

    def get_lr(self):
        s, n = self.spec, min(self.num_iters, self.spec["end_iter"] - self.spec["warmup_iter"])
        if s["warmup_iter"] > 0 and self.num_iters <= s["warmup_iter"]:
            return s["lr"] * n / s["warmup_iter"]
        return max(s["lr"] / 2 * (math.cos(math.pi * (n - s["warmup_iter"]) / s["end_iter"]) + 1), s["min_lr"])

    def step(self, *args, **kwargs):
        self.num_iters += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.get_lr()

    def state_dict(self):
        s = self.spec
        return {
            "start_lr": s["lr"],
            "warmup_iter": float(s["warmup_iter"]),
            "num_iters": self.num_iters,
            "decay_style": "cosine",
            "end_iter": s["end_iter"],
            "min_lr": s["min_lr"],
        }


def neox_groups(module):
    """gpt-neox v1.0 get_params_for_weight_decay_optimization: LayerNorm params and biases do not decay."""
    decay, no_decay = [], []
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            (no_decay if isinstance(sub, torch.nn.LayerNorm) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]


def run_rank(rank, save_dir, spec, port):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(spec["dp"]),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        LOCAL_SIZE=str(spec["dp"]),
    )
    import deepspeed
    from deepspeed.accelerator import get_accelerator
    from deepspeed.pipe import LayerSpec, PipelineModule
    from deepspeed.runtime.pipe.topology import PipeModelDataParallelTopology

    # DeepSpeed's CPU accelerator says fp16 only where oneDNN has fp16 kernels (AVX512-FP16/AMX CPUs); torch's CPU
    # fp16 ops work everywhere, so the capability check is answered here and the engine runs its real fp16 path.
    get_accelerator().is_fp16_supported = lambda: True
    deepspeed.init_distributed("gloo")
    torch.manual_seed(1234)
    H, L, V = spec["hidden"], spec["layers"], spec["vocab"]
    layers = [
        LayerSpec(EmbeddingPipe, V, H),
        _transpose,
        *[LayerSpec(ParallelTransformerLayerPipe, H, spec["heads"]) for _ in range(L)],
        _transpose,
        LayerSpec(NormPipe, H),
        LayerSpec(ParallelLinearPipe, H, V),
    ]

    def loss_fn(logits, labels):
        return torch.nn.functional.cross_entropy(logits.float().transpose(0, 1).reshape(-1, V), labels.reshape(-1))

    module = PipelineModule(
        layers=layers,
        loss_fn=loss_fn,
        topology=PipeModelDataParallelTopology(1, 1, spec["dp"]),
        partition_method="parameters",
    )
    optimizer = torch.optim.AdamW(neox_groups(module), lr=spec["lr"], betas=(0.9, 0.95), eps=1e-8)
    scheduler = AnnealingLR(optimizer, spec)
    config = {
        "train_batch_size": spec["micro"] * spec["dp"],
        "train_micro_batch_size_per_gpu": spec["micro"],
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "zero_allow_untested_optimizer": True,
        "zero_optimization": {"stage": 1, "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8},
        "fp16": {
            "enabled": True,
            "loss_scale": 0,
            "initial_scale_power": 12,
            "loss_scale_window": 1000,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "steps_per_print": 10**9,
    }
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    generator = torch.Generator().manual_seed(100 + rank)

    def batches():
        while True:
            ids = torch.randint(0, V, (spec["micro"], spec["seq"] + 1), generator=generator)
            yield ids[:, :-1], ids[:, 1:]

    data = batches()
    for _ in range(spec["steps"]):
        engine.train_batch(data_iter=data)
    args = {
        "num_layers": L,
        "hidden_size": H,
        "num_attention_heads": spec["heads"],
        "max_position_embeddings": 2048,
        "make_vocab_size_divisible_by": 128,
        "padded_vocab_size": V,
        "tokenizer_type": "HFTokenizer",
        "model_parallel_size": 1,
    }
    iteration = spec["steps"]
    engine.save_checkpoint(save_dir, tag=f"global_step{iteration}", client_state={"iteration": iteration, "args": args})
    # What DeepSpeed holds in memory: this rank's flat fp32 partition per group and its Adam state, gathered to
    # rank 0 and cut by the group's live parameters (bit16_groups: the order DeepSpeed flattened them in).
    zero = engine.optimizer
    mine = [
        {
            "master": part.detach().clone(),
            **{k: zero.optimizer.state[part][k].clone() for k in ("exp_avg", "exp_avg_sq")},
        }
        for part in zero.single_partition_of_fp32_groups
    ]
    gathered = [None] * spec["dp"]
    torch.distributed.all_gather_object(gathered, mine)
    if rank == 0:
        name_of = {id(p): n for n, p in engine.module.named_parameters()}
        captured = {}
        for g, params in enumerate(zero.bit16_groups):
            flat = {k: torch.cat([ranks[g][k] for ranks in gathered]) for k in ("master", "exp_avg", "exp_avg_sq")}
            offset = 0
            for p in params:
                captured[name_of[id(p)]] = {k: v[offset : offset + p.numel()].view(p.shape) for k, v in flat.items()}
                offset += p.numel()
        torch.save(
            {
                "params": captured,
                "loss_scale": float(zero.loss_scale),
                "skipped_steps": engine.skipped_steps,
                "num_iters": scheduler.num_iters,
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in zero.optimizer.param_groups],
            },
            os.path.join(save_dir, "captured.pt"),
        )
    deepspeed.comm.barrier()


def main():
    save_dir, spec = sys.argv[1], json.loads(open(sys.argv[2]).read())
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(run_rank, args=(save_dir, spec, port), nprocs=spec["dp"], join=True)


if __name__ == "__main__":
    main()
