"""RWKV-4 checkpoints in BlinkDL's `.pth` format, the one the `rwkv` package (ChatRWKV, rwkv.cpp's
converters) loads: the inverse of transformers' `convert_rwkv_checkpoint_to_hf.py`.

transformers renames BlinkDL's keys and nothing else: `emb.` -> `rwkv.embeddings.`, `blocks.0.ln0` ->
`rwkv.blocks.0.pre_ln`, `att` -> `attention`, `ffn` -> `feed_forward`, `time_mix_k/v/r` ->
`time_mix_key/value/receptance`, `rwkv.` before everything but `head.weight`. Values are unchanged: both
store `time_decay` as the raw parameter w (the decay applied is exp(-exp(w)): transformers' forward and the
`rwkv` package's loader both take -exp(w)), `time_first` as is, time mixes as (1, 1, C), matrices as
(out, in). The `rwkv` package transposes and converts at load time; its `cpu fp32` strategy wants fp32.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Dict, Optional

from parc.errors import ParcError

RWKV_FILE = "rwkv.pth"  # the name a revision publishes it under (hub.extra_formats=[rwkv])
DTYPES = ("fp32", "fp16", "bf16")

_RENAMES = [  # (transformers, BlinkDL), applied in order to the name without its "rwkv." prefix
    (r"^embeddings\.", "emb."),
    (r"^blocks\.0\.pre_ln\.", "blocks.0.ln0."),
    (r"^blocks\.(\d+)\.attention\.", r"blocks.\1.att."),
    (r"^blocks\.(\d+)\.feed_forward\.", r"blocks.\1.ffn."),
    (r"\.time_mix_key$", ".time_mix_k"),
    (r"\.time_mix_value$", ".time_mix_v"),
    (r"\.time_mix_receptance$", ".time_mix_r"),
]


def blinkdl_name(hf_name: str) -> str:
    name = hf_name.removeprefix("rwkv.")
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def load_hf_weights(checkpoint_dir: Path) -> Dict:
    """The state dict of an HF RWKV checkpoint directory (one safetensors file or an index of shards)."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    config_file = checkpoint_dir / "config.json"
    if not config_file.is_file():
        raise ParcError(
            f"{checkpoint_dir} is not a checkpoint directory (no config.json): give a checkpoint-N "
            "directory of an arch=rwkv run, or hub:<org/name>@<revision>"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "rwkv":
        raise ParcError(
            f"{checkpoint_dir} is not an RWKV checkpoint (model_type={model_type!r}); only arch=rwkv "
            "runs export to the rwkv format"
        )
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    weights = {}
    for shard in shards:
        if not (checkpoint_dir / shard).is_file():
            raise ParcError(f"{checkpoint_dir} has no {shard}: the checkpoint is incomplete")
        weights.update(load_file(str(checkpoint_dir / shard)))
    return weights


def to_blinkdl(hf_weights: Dict, dtype: Optional[str] = None) -> Dict:
    import torch

    cast = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
    state = {blinkdl_name(name): tensor.contiguous() for name, tensor in hf_weights.items()}
    if "head.weight" not in state:  # tied to the embedding, saved once
        state["head.weight"] = state["emb.weight"]
    # Tensors of their own (no shared storage), so torch.save writes each one.
    return {name: (tensor.to(cast) if cast is not None else tensor).clone() for name, tensor in sorted(state.items())}


def export_rwkv(checkpoint_dir: Path, out: Path, dtype: Optional[str] = None) -> Path:
    """Write `out` (BlinkDL RWKV-4 .pth) from an HF RWKV checkpoint directory, atomically."""
    import torch

    if dtype is not None and dtype not in DTYPES:
        raise ParcError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    state = to_blinkdl(load_hf_weights(checkpoint_dir), dtype)
    out = Path(out)
    if not out.parent.is_dir():
        raise ParcError(f"cannot write {out}: {out.parent} is not a directory; create it or choose another path")
    tmp = out.with_name(f".tmp-{out.name}-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:  # opened here, so a bad path is an OSError, not torch's RuntimeError
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ParcError(f"cannot write {out} ({exc.strerror}); choose a writable path") from None
    return out
