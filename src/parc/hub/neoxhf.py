"""parc.export hf: a raw GPT-NeoX checkpoint (parc.store.neox_raw) written as a Hugging Face `GPTNeoXForCausalLM`
directory: the fp32 master weights, or `fp16` as EleutherAI's published `pythia-*` branches (whose tensors are the
fp16 layer files, i.e. the masters cast with `.half()`). The config is Pythia's (rotary_pct 0.25, parallel residual,
untied embeddings, LayerNorm eps 1e-5) with the sizes from the checkpoint's `args` (and its tensors' shapes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from parc.errors import ParcError
from parc.store import neox_raw

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def pythia_config(raw: neox_raw.RawCheckpoint):
    from transformers import GPTNeoXConfig

    args = raw.args or {}
    if "num_attention_heads" not in args:
        raise ParcError(
            f"{raw.path}: its model states hold no args.num_attention_heads (a NeoX checkpoint has it); "
            f"the number of heads cannot be read from the tensors"
        )
    vocab, hidden = raw.weights["gpt_neox.embed_in.weight"].shape
    layers = 1 + max(int(n.split(".")[2]) for n in raw.weights if n.startswith("gpt_neox.layers."))
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=args["num_attention_heads"],
        intermediate_size=4 * hidden,
        max_position_embeddings=args.get("max_position_embeddings", 2048),
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=0,
    )


def build_model(raw: neox_raw.RawCheckpoint, dtype: str = "fp32"):
    """A GPTNeoXForCausalLM holding the checkpoint's masters (cast to `dtype`)."""
    from transformers import GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM(pythia_config(raw)).to(torch.float32)
    own = dict(model.named_parameters())
    weights = neox_raw.for_model(raw.weights, own)
    if set(weights) != set(own):
        raise ParcError(
            f"{raw.path}: its parameters do not make a GPT-NeoX model ({sorted(set(weights) ^ set(own))[0]})"
        )
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(weights[name])
    return model.to(DTYPES[dtype])


def export_neox_hf(source: Path, out: Path, dtype: Optional[str]) -> Path:
    """Read the raw checkpoint at `source`, write the HF directory `out` (refused if it exists and is not empty)."""
    dtype = dtype or "fp32"
    if dtype not in DTYPES:
        raise ParcError(f"dtype={dtype}: choose fp32 (the masters) or fp16 (as the published HF branches)")
    if out.exists() and any(out.iterdir()):
        raise ParcError(f"{out} exists and is not empty: give a new directory")
    started = time.perf_counter()
    raw = neox_raw.read_raw(source)
    build_model(raw, dtype).save_pretrained(out, safe_serialization=True)
    print(
        f"read {raw.bytes_read / 1e9:.3g} GB in {raw.seconds:.1f} s ({raw.format}, {raw.dp} x {raw.mp} ranks); "
        f"wrote {out} in {time.perf_counter() - started:.1f} s in all"
    )
    return out
