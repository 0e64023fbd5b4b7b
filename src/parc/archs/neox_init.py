"""GPT-NeoX's initialisation (as the Pythia suite was trained), applied to a transformers GPTNeoX model.

`arch.init`:
- ``hf``: transformers' `from_config` init, N(0, initializer_range=0.02) everywhere (Parc's; the default).
- ``neox``: what Pythia used for its size. 14m-2.8b set `init_method: small_init` and
  `output_layer_init_method: wang_init`: N(0, sqrt(2 / (5 d))) for query_key_value, dense_h_to_4h,
  embed_in and embed_out; N(0, 2 / (L sqrt(d))) for attention.dense and dense_4h_to_h. 6.9b and 12b set
  neither, so got NeoX's defaults, ``neox-normal``: N(0, 0.02) and N(0, 0.02 / sqrt(2 L)) for the same
  two families. A size preset names its variant (`arch.sizes.<size>.init`); `neox` follows it.
In every variant biases are 0 and LayerNorms 1 / 0 (NeoX's, and also transformers').
Formulas: gpt-neox v1.0 `megatron/model/init_functions.py`; which layer gets which: `megatron/model/
transformer.py` (ColumnParallelLinear QKV / h_to_4h use init_method, RowParallelLinear dense / 4h_to_h
use output_layer_init_method), `word_embeddings.py` and the final linear (init_method).
"""

from __future__ import annotations

import math
from typing import Dict

import torch

from parc.errors import ParcError

INPUT_FAMILY = (
    "attention.query_key_value.weight",
    "mlp.dense_h_to_4h.weight",
    "embed_in.weight",
    "lm_head.weight",
)  # NeoX's embed_out (transformers 5 names it lm_head; saves it as embed_out)
OUTPUT_FAMILY = ("attention.dense.weight", "mlp.dense_4h_to_h.weight")


def variant(arch_cfg) -> str:
    """small (small_init + wang_init) or normal (NeoX's defaults) for this arch config."""
    from parc.archs.spec import size_preset

    if arch_cfg.init == "neox-normal":
        return "normal"
    return "normal" if size_preset(arch_cfg).get("init") == "neox-normal" else "small"


def family_stds(config, which: str) -> Dict[str, float]:
    """The standard deviation of each weight family (by name suffix) for a GPTNeoX config."""
    d, layers = config.hidden_size, config.num_hidden_layers
    if which == "small":
        inner, outer = math.sqrt(2 / (5 * d)), 2 / layers / math.sqrt(d)
    else:
        inner, outer = 0.02, 0.02 / math.sqrt(2.0 * layers)
    return {**{name: inner for name in INPUT_FAMILY}, **{name: outer for name in OUTPUT_FAMILY}}


def apply_neox_init(model: torch.nn.Module, arch_cfg) -> None:
    """Re-draw every weight of `model` (in named_parameters order, from torch's global generator) as NeoX does."""
    if arch_cfg.name != "pythia":
        raise ParcError(
            f"arch.init={arch_cfg.init} is GPT-NeoX's initialisation: it applies to arch=pythia only; "
            f"use arch.init=hf with arch={arch_cfg.name}"
        )
    stds = family_stds(model.config, variant(arch_cfg))
    with torch.no_grad():
        for name, param in model.named_parameters():
            std = next((s for suffix, s in stds.items() if name.endswith(suffix)), None)
            if std is not None:
                param.normal_(0.0, std)
            elif name.endswith("bias"):
                param.zero_()
            elif "norm" in name:  # input_layernorm, post_attention_layernorm, final_layer_norm weights
                param.fill_(1.0)
            else:
                raise ParcError(f"arch.init=neox does not know how to initialise {name}; use arch.init=hf")
