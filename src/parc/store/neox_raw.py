"""Reading a raw GPT-NeoX checkpoint (DeepSpeed's files, as EleutherAI's `neox-ckpt-pythia-*` branches hold them) into
plain tensors in Hugging Face `GPTNeoXForCausalLM` names: fp32 master weights, Adam's `exp_avg` / `exp_avg_sq`, and
the counters NeoX saved (iteration, the LR scheduler's state, the fp16 loss scale, `args`).

Formats (dispatched on the optimizer files' keys):
- DeeperSpeed 0.3.15 ZeRO-1 (Pythia 70M-12B): `local_sub_partitions_of_fp32_groups`, C comm intervals x DP ranks
  sub-partitions per group, interleaved: sub-partition i is rank i % DP's interval i // DP, tail padding trimmed;
  `param_shapes` (one dict, module order) in the optimizer files, regrouped by NeoX's decay rule.
- modern DeepSpeed ZeRO-1/2: `single_partition_of_fp32_groups` (one flat piece per rank per group, concatenated in
  rank order, padding at the tail) with `param_shapes` (one dict per group) in `mp_rank_00_model_states.pt`.
- no pipeline (Pythia 14M/31M): everything in `mp_rank_MM_model_states.pt` (`module` = `sequential.<idx>.<name>`,
  `optimizer` = the fused FP16 optimizer's `fp32_groups_flat` + a torch optimizer state per group).
Model-parallel ranks are merged as NeoX's converters do (column-parallel cat dim 0, row-parallel weights cat dim 1,
norms averaged, row-parallel biases summed). Every weight of the layer files must equal its master cast to the file's
dtype (`master.half()` for fp16): a mismatch is refused with the tensor's name. Files are unpickled without deepspeed
and without running code (parc.store.neox_pickle).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from parc.errors import ParcError
from parc.store.neox_pickle import load_untrusted

MOMENTS = ("exp_avg", "exp_avg_sq")
NORMS = {"input_layernorm", "post_attention_layernorm", "norm"}
COLUMN = {
    "word_embeddings.weight",
    "final_linear.weight",
    "attention.query_key_value.weight",
    "attention.query_key_value.bias",
    "mlp.dense_h_to_4h.weight",
    "mlp.dense_h_to_4h.bias",
}
ROW_WEIGHTS = {"attention.dense.weight", "mlp.dense_4h_to_h.weight"}
ROW_BIASES = {"attention.dense.bias", "mlp.dense_4h_to_h.bias"}
_LAYER_FILE = re.compile(r"^layer_(\d+)-model_(\d+)-model_states\.pt$")
_MP_FILE = re.compile(r"^mp_rank_(\d+)_model_states\.pt$")


@dataclass
class RawCheckpoint:
    """A raw NeoX checkpoint, read: tensors keyed by HF names (fp32, merged over model-parallel ranks)."""

    path: Path
    format: str  # "deeperspeed-0.3.15", "deepspeed", or "sequential" (no pipeline: 14M/31M)
    weights: Dict[str, torch.Tensor]
    moments: Dict[str, Dict[str, torch.Tensor]]  # HF name -> {"exp_avg", "exp_avg_sq"}
    iteration: int
    lr_scheduler: Optional[dict]
    skipped_steps: int
    args: Optional[dict]
    loss_scale: Optional[dict]  # the loss scaler's attributes (cur_scale, cur_iter, ...); None without one
    train_batch_size: Optional[int]
    dp: int
    mp: int
    bytes_read: int = 0
    seconds: float = 0.0
    checked_halves: List[str] = field(default_factory=list)

    @property
    def num_iters(self) -> int:
        """Where NeoX's LR scheduler stands: iteration - skipped (fp16-overflow) steps."""
        return int(self.lr_scheduler["num_iters"]) if self.lr_scheduler else self.iteration - self.skipped_steps


def locate(path: Path) -> Path:
    """The `global_stepN` directory of `path` (that directory itself, or a save dir whose `latest` names it)."""
    path = Path(path)
    if (path / "latest").is_file() and not any(path.glob("mp_rank_*_model_states.pt")):
        path = path / (path / "latest").read_text().strip()
    if not path.is_dir() or not any(path.glob("mp_rank_*_model_states.pt")):
        raise ParcError(
            f"{path} is not a raw GPT-NeoX checkpoint: give a global_stepN directory (with "
            f"mp_rank_00_model_states.pt) or the save directory whose `latest` file names one"
        )
    return path


def iteration_of(tag: Path) -> Optional[int]:
    """N of a `global_stepN` directory name, or None for another name."""
    digits = Path(tag).name.removeprefix("global_step")
    return int(digits) if digits.isdigit() else None


def tag_iteration(tag: Path) -> int:
    """The iteration of a checkpoint: N of its `global_stepN` name, else what its model states say."""
    named = iteration_of(tag)
    if named is not None:
        return named
    meta = load_untrusted(sorted(Path(tag).glob("mp_rank_*_model_states.pt"))[0])
    return int(meta.get("iteration", meta.get("global_steps", 0)))


def is_tag(path: Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("mp_rank_*_model_states.pt"))


def tags(path: Path) -> List[Path]:
    """Every checkpoint `path` names, by iteration: a `global_stepN` directory itself, or each `global_step*`
    directory of a save dir (one checkpoint per tag, whatever `latest` says)."""
    path = Path(path)
    if is_tag(path):
        return [path]
    found = sorted(
        (p for p in path.glob("global_step*") if is_tag(p) and iteration_of(p) is not None), key=iteration_of
    )
    if not found:
        raise ParcError(
            f"{path} holds no raw GPT-NeoX checkpoint: give a global_stepN directory (with "
            f"mp_rank_00_model_states.pt) or the save directory holding global_stepN directories"
        )
    return found


def read_raw(path: Path, check_halves: bool = True) -> RawCheckpoint:
    """Read every model-parallel rank of the checkpoint at `path` and merge them (see the module docstring)."""
    started = time.perf_counter()
    tag = locate(path)
    ranks = sorted(int(_MP_FILE.match(p.name).group(1)) for p in tag.glob("mp_rank_*_model_states.pt"))
    files_read: List[Path] = []
    per_rank, meta, fmt = [], None, None
    for mp in ranks:
        rank_meta = load_untrusted(tag / f"mp_rank_{mp:02d}_model_states.pt")
        files_read.append(tag / f"mp_rank_{mp:02d}_model_states.pt")
        meta = meta or rank_meta
        if rank_meta.get("module") is not None:
            fmt, flat, layers = "sequential", *_sequential_rank(rank_meta)
        else:
            fmt, flat, layers, files = _pipeline_rank(tag, mp, rank_meta)
            files_read += files
        if check_halves:
            _check_halves(layers, flat, tag, mp)
        per_rank.append((flat, rank_meta))
    merged = {name: _merge(name, [flat[name] for flat, _ in per_rank]) for name in per_rank[0][0]}
    rename = hf_names(list(merged))
    scaler = _scaler(per_rank[0][1], tag, mp=ranks[0])
    steps, samples = meta.get("global_steps"), meta.get("global_samples")
    raw = RawCheckpoint(
        path=tag,
        format=fmt,
        weights={rename[n]: v["master"] for n, v in merged.items()},
        moments={rename[n]: {k: v[k] for k in MOMENTS} for n, v in merged.items()},
        iteration=int(meta.get("iteration", meta.get("global_steps", 0))),
        lr_scheduler=meta.get("lr_scheduler"),
        skipped_steps=int(meta.get("skipped_steps", 0)),
        args=meta.get("args"),
        loss_scale=scaler,
        train_batch_size=samples // steps if steps else None,
        dp=int(meta.get("dp_world_size", 1)),
        mp=len(ranks),
        checked_halves=sorted(rename[n] for n in merged) if check_halves else [],
    )
    raw.bytes_read = sum(p.stat().st_size for p in files_read)
    raw.seconds = time.perf_counter() - started
    return raw


# --- one model-parallel rank ----------------------------------------------------------------------------------


def _pipeline_rank(tag: Path, mp: int, meta: dict):
    """(format, {neox name: {master, exp_avg, exp_avg_sq}}, {neox name: layer-file tensor}, files read)."""
    zero_files = sorted(
        tag.glob(f"zero_pp_rank_*_mp_rank_{mp:02d}_optim_states.pt"), key=lambda p: int(p.name.split("_")[3])
    )
    dp = int(meta.get("dp_world_size", len(zero_files)))
    if len(zero_files) != dp:
        raise ParcError(
            f"{tag} holds {len(zero_files)} zero_pp_rank_*_mp_rank_{mp:02d}_optim_states.pt files, "
            f"its model states say dp_world_size {dp}: the download is incomplete; fetch it again"
        )
    states = [load_untrusted(p) for p in zero_files]
    optim = [s["optimizer_state_dict"] for s in states]
    if "local_sub_partitions_of_fp32_groups" in optim[0]:
        fmt, groups = "deeperspeed-0.3.15", _regroup(states[0]["param_shapes"])
        flats = [_interleaved(optim, g) for g in range(len(groups))]
    elif "single_partition_of_fp32_groups" in optim[0]:
        fmt, groups = "deepspeed", [list(g.items()) for g in meta["param_shapes"]]
        flats = [_concatenated(optim, g) for g in range(len(groups))]
    else:
        raise ParcError(
            f"{zero_files[0]} holds neither local_sub_partitions_of_fp32_groups (DeeperSpeed 0.3.15) "
            f"nor single_partition_of_fp32_groups (DeepSpeed ZeRO-1/2): not a format Parc reads"
        )
    flat = {}
    for g, (shapes, pieces) in enumerate(zip(groups, flats)):
        flat.update(_cut(shapes, pieces, f"{tag.name} group {g} (mp rank {mp})", exact=fmt != "deepspeed"))
    layers, files = {}, list(zero_files)
    for path in sorted(tag.glob(f"layer_*-model_{mp:02d}-model_states.pt")):
        index = int(_LAYER_FILE.match(path.name).group(1))
        layers.update({f"{index}.{k}": v for k, v in load_untrusted(path).items()})
        files.append(path)
    return fmt, flat, layers, files


def _sequential_rank(meta: dict):
    """No pipeline (14M/31M): `module` holds `sequential.<idx>.<name>` weights, `optimizer` the flat fp32 groups."""
    module = {k[len("sequential.") :]: v for k, v in meta["module"].items() if k.startswith("sequential.")}
    params = [(n, t.shape) for n, t in module.items() if not n.endswith("inv_freq")]
    optim = meta["optimizer"]
    flat = {}
    for g, shapes in enumerate(_regroup(dict(params))):
        state = optim["optimizer_state_dict"]["state"][g]
        pieces = {"master": optim["fp32_groups_flat"][g], **{k: state[k] for k in MOMENTS}}
        flat.update(_cut(shapes, pieces, f"group {g}", exact=False))
    return flat, module


def _regroup(shapes) -> List[List[Tuple[str, torch.Size]]]:
    """NeoX's two optimizer groups in module order: decayed (weights of non-norm modules), then norms and biases."""
    decay = [(n, s) for n, s in shapes.items() if not _no_decay(n)]
    return [decay, [(n, s) for n, s in shapes.items() if _no_decay(n)]]


def _no_decay(name: str) -> bool:
    parts = name.split(".")
    return parts[-1] == "bias" or parts[-2] in NORMS


def _interleaved(optim: List[dict], g: int) -> Dict[str, torch.Tensor]:
    """0.3.15: flat = cat(file[i % DP] interval i // DP for i in range(C x DP)) for the masters and both moments."""
    dp, intervals = len(optim), optim[0]["num_comm_intervals_per_group"][g]
    order = [(i % dp, i // dp) for i in range(intervals * dp)]
    out = {"master": torch.cat([optim[r]["local_sub_partitions_of_fp32_groups"][g][c].float() for r, c in order])}
    for key in MOMENTS:
        out[key] = torch.cat([optim[r]["base_optimizer_state"][g][c][key].float() for r, c in order])
    return out


def _concatenated(optim: List[dict], g: int) -> Dict[str, torch.Tensor]:
    """Modern DeepSpeed: one flat piece per rank, in rank order; Adam's state indexed by group."""
    out = {"master": torch.cat([o["single_partition_of_fp32_groups"][g].float() for o in optim])}
    for key in MOMENTS:
        out[key] = torch.cat([_group_state(o["base_optimizer_state"], g)[key].float() for o in optim])
    return out


def _group_state(base, g: int) -> dict:
    if isinstance(base, dict) and "state" in base:  # torch's optimizer.state_dict(): one flat param per group
        return base["state"][g]
    return base[g] if isinstance(base[g], dict) else base[g][0]  # elastic: per-group lean dicts


def _cut(shapes, pieces: Dict[str, torch.Tensor], where: str, exact: bool) -> Dict[str, Dict[str, torch.Tensor]]:
    """Cut one group's flat tensors by its parameters' shapes; the lengths must add up (padding only at the tail)."""
    total = sum(torch.Size(s).numel() for _, s in shapes)
    for key, flat in pieces.items():
        if len(flat) < total or (exact and len(flat) != total):
            raise ParcError(
                f"{where}: the {key} partitions hold {len(flat)} values, its parameters need {total}: "
                f"the files do not belong together (or a zero_pp_rank file is missing)"
            )
    out, offset = {}, 0
    for name, shape in shapes:
        n = torch.Size(shape).numel()
        out[name] = {k: v[offset : offset + n].view(shape).clone() for k, v in pieces.items()}
        offset += n
    return out


def _check_halves(layers: Dict[str, torch.Tensor], flat: Dict[str, dict], tag: Path, mp: int) -> None:
    """Every weight of the layer files equals its fp32 master cast to the file's dtype; none is missing."""
    weights = {n: t for n, t in layers.items() if not n.endswith("inv_freq")}
    if set(weights) != set(flat):
        missing = sorted(set(flat) ^ set(weights))[:3]
        raise ParcError(
            f"{tag} (mp rank {mp}): the layer files and the optimizer files name different parameters "
            f"({', '.join(missing)}): not one checkpoint"
        )
    for name, tensor in weights.items():
        master = flat[name]["master"]
        if tensor.shape != master.shape or not torch.equal(tensor, master.to(tensor.dtype)):
            raise ParcError(
                f"{tag}: the {tensor.dtype} weight {name} (mp rank {mp}) is not its fp32 master cast to "
                f"{tensor.dtype}: the layer and optimizer files disagree (damaged, or from different steps)"
            )


def _scaler(meta: dict, tag: Path, mp: int) -> Optional[dict]:
    if meta.get("module") is not None:  # fused FP16 optimizer: the scaler's fields sit in its state dict
        optim = meta["optimizer"]
        return {
            k: optim[k]
            for k in ("cur_scale", "cur_iter", "last_overflow_iter", "scale_factor", "scale_window")
            if k in optim
        } or None
    zero = load_untrusted(next(tag.glob(f"zero_pp_rank_0_mp_rank_{mp:02d}_optim_states.pt")))
    scaler = zero["optimizer_state_dict"].get("loss_scaler")
    return dict(vars(scaler)) if scaler is not None and zero["optimizer_state_dict"].get("dynamic_loss_scale") else None


# --- merging model-parallel ranks and naming ------------------------------------------------------------------


def _merge(name: str, ranks: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """One parameter's tensors over model-parallel ranks, merged as NeoX's converters merge the weights."""
    if len(ranks) == 1:
        return ranks[0]
    suffix = name.split(".", 1)[1]
    out = {}
    for key in ranks[0]:
        parts = [r[key] for r in ranks]
        if suffix in COLUMN:
            out[key] = torch.cat(parts, dim=0)
        elif suffix in ROW_WEIGHTS:
            out[key] = torch.cat(parts, dim=1)
        elif suffix in ROW_BIASES and key == "master":
            out[key] = torch.stack(parts).sum(0)
        else:  # norms (and the row biases' moments): replicated; NeoX's converter averages them
            out[key] = torch.stack(parts).mean(0)
    return out


def hf_names(names: List[str]) -> Dict[str, str]:
    """NeoX pipeline names (`<layer index>.<name>`) -> GPTNeoXForCausalLM's: 0 embedding, 2..L+1 layers, L+3 final
    norm, L+4 `final_linear` (indices 1 and L+2 are functions without weights)."""
    final = {int(n.split(".")[0]) for n in names if n.split(".", 1)[1].startswith("norm.")}
    if len(final) != 1:
        raise ParcError(
            f"cannot find the final norm among the checkpoint's parameters ({len(names)} names): not a GPT-NeoX model"
        )
    norm_index = final.pop()
    out = {}
    for name in names:
        index, rest = name.split(".", 1)
        index = int(index)
        if index == 0 and rest == "word_embeddings.weight":
            out[name] = "gpt_neox.embed_in.weight"
        elif 2 <= index < norm_index - 1:
            out[name] = f"gpt_neox.layers.{index - 2}.{rest}"
        elif index == norm_index:
            out[name] = f"gpt_neox.final_layer_norm.{rest.split('.', 1)[1]}"
        elif index == norm_index + 1 and rest == "final_linear.weight":
            out[name] = "embed_out.weight"
        else:
            raise ParcError(f"unexpected parameter {name} in a GPT-NeoX checkpoint (final norm at layer {norm_index})")
    return out


def for_model(tensors: Dict[str, object], model_names) -> Dict[str, object]:
    """`tensors` keyed by the names of this transformers version's model: the published checkpoints' `embed_out`
    is `lm_head` in transformers 5 (which renames it when loading a file)."""
    names = set(model_names)
    if "embed_out.weight" in tensors and "embed_out.weight" not in names and "lm_head.weight" in names:
        tensors = {("lm_head.weight" if n == "embed_out.weight" else n): v for n, v in tensors.items()}
    return tensors
