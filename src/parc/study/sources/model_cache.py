"""Loading checkpoints for the study layer: each checkpoint's weights read once, one module per architecture.

The first checkpoint of an architecture config is built by `from_pretrained` (transformers' own loader,
which knows the renames of legacy names, e.g. GPT-NeoX files say `embed_out` where the module says
`lm_head`). That load also teaches the file -> module name map; every later checkpoint with the same config
is read straight from its safetensors and copied into the same module with `load_state_dict`, so a grid of
18 runs x 100 checkpoints builds three modules, not 1800. Hub revisions are downloaded at their exact commit
and, with `keep_downloads=False`, deleted again when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional

import torch

from parc.errors import ParcError
from parc.study.sources.refs import CheckpointRef, LoadedCheckpoint
from parc.study.sources.runs import run_config

DEFAULT_MAX_LENGTH = 2048  # what lm-eval assumes when a config names no context length
TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
}


def weight_files(directory: Path) -> list:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return sorted({directory / name for name in json.loads(index.read_text())["weight_map"].values()})
    single = directory / "model.safetensors"
    return [single] if single.is_file() else []


def read_state_dict(directory: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: Dict[str, torch.Tensor] = {}
    for path in weight_files(directory):
        state.update(load_file(path))
    return state


def config_key(config) -> str:
    """What makes two checkpoints loadable into the same module: the model config minus bookkeeping."""
    values = config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        values.pop(volatile, None)
    return json.dumps(values, sort_keys=True, default=str)


def learn_key_map(file_state: Dict[str, torch.Tensor], model) -> Optional[Dict[str, str]]:
    """file key -> module key, from a module that was just loaded from these very tensors; None if ambiguous."""
    module_state = model.state_dict()
    mapping, unmatched = {}, []
    for key in file_state:
        if key in module_state:
            mapping[key] = key
        else:
            unmatched.append(key)
    free = [k for k in module_state if k not in mapping.values()]
    for key in unmatched:
        tensor = file_state[key]
        equal = [k for k in free if module_state[k].shape == tensor.shape and torch.equal(module_state[k], tensor)]
        if len(equal) != 1:
            return None
        mapping[key] = equal[0]
        free.remove(equal[0])
    return mapping


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class ArchModule:
    """One built module and how to copy a checkpoint's tensors into it."""

    def __init__(self, model, key_map: Optional[Dict[str, str]]):
        self.model, self.key_map = model, key_map

    def load(self, directory: Path) -> bool:
        """Copy the checkpoint into the module; False when its files cannot be mapped (caller rebuilds)."""
        return self.load_state(read_state_dict(directory)) if self.key_map is not None else False

    def load_state(self, state: Dict[str, torch.Tensor]) -> bool:
        """Copy these tensors (keyed as the files that built the module) into it; False when they do not map."""
        if self.key_map is None or set(state) != set(self.key_map):
            return False
        renamed = {self.key_map[k]: v for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(renamed, strict=False)
        module_state = self.model.state_dict()
        # A key absent from the file must be a tied weight (e.g. Mamba's lm_head is its embedding).
        untied = [k for k in missing if not any(shares_storage(module_state[k], module_state[r]) for r in renamed)]
        if unexpected or untied:
            return False
        return True


class ModelCache:
    """Loads checkpoints for the study layer, reusing one model module per architecture (load_state_dict)."""

    def __init__(
        self, keep_downloads: bool = True, cache_dir: Optional[Path] = None, fast_path: Optional[str] = "auto"
    ):
        self.keep_downloads = keep_downloads
        self.cache_dir = cache_dir
        self.fast_path = fast_path  # Parc's fast path for Pythia/Mamba/RWKV modules (same function); None: as loaded
        self.modules: Dict[str, ArchModule] = {}
        self.tokenizers: Dict[str, object] = {}
        self.builds = 0  # modules built (from_pretrained); the rest were loaded in place
        self.loads = 0

    @contextlib.contextmanager
    def open(self, ref: CheckpointRef) -> Iterator[LoadedCheckpoint]:
        """Context manager yielding a LoadedCheckpoint; a Hub download is dropped on exit unless kept."""
        temp = None
        try:
            if ref.is_neox:  # a raw GPT-NeoX checkpoint: built in memory; the directory is its tokenizer's
                from parc.study.sources.neox import tokenizer_dir

                directory = tokenizer_dir(ref)
                model = self.load_raw(ref.local_dir)
            else:
                if ref.is_hub:
                    from parc.study.sources.hub import download

                    target = self.download_dir(ref)
                    temp = None if self.keep_downloads else Path(target)
                    directory = Path(download(ref, target))
                else:
                    directory = ref.local_dir
                model = self.load_model(directory)
            yield LoadedCheckpoint(
                ref=ref,
                model=model,
                tokenizer=self.tokenizer(directory),
                directory=directory,
                max_length=max_length_of(model.config, ref),
            )
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def download_dir(self, ref: CheckpointRef) -> Optional[str]:
        """Where a revision goes: None (kept beside the HF cache, parc.hub.reader.cache_dir_for),
        `cache_dir/<repo>/<commit>`, or a temp dir (dropped)."""
        if self.keep_downloads:
            return (
                None
                if self.cache_dir is None
                else str(Path(self.cache_dir) / ref.repo_id.replace("/", "--") / ref.commit)
            )
        if self.cache_dir is not None:
            Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix="parc-download-", dir=self.cache_dir)

    def load_model(self, directory: Path):
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(directory)
        except (OSError, ValueError) as exc:
            raise ParcError(f"{directory} is not a Hugging Face model ({str(exc).splitlines()[0]})") from None
        key = config_key(config)
        self.loads += 1
        cached = self.modules.get(key)
        if cached is not None and cached.load(directory):
            return cached.model
        model = self.build(directory)
        file_state = read_state_dict(directory)
        self.modules[key] = ArchModule(model, learn_key_map(file_state, model) if file_state else None)
        return model

    def load_raw(self, tag: Path):
        """A raw GPT-NeoX checkpoint (parc.store.neox_raw's fp32 masters) in the module `parc.export hf` would
        write (parc.hub.neoxhf), reusing the module of its config as load_model does."""
        from parc.hub.neoxhf import build_model, pythia_config
        from parc.store.neox_raw import read_raw

        raw = read_raw(tag)
        key = config_key(pythia_config(raw))
        self.loads += 1
        cached = self.modules.get(key)
        if cached is not None and cached.load_state(raw.weights):
            return cached.model
        model = self.prepare(build_model(raw))
        self.modules[key] = ArchModule(model, learn_key_map(raw.weights, model))
        return model

    def build(self, directory: Path):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-load bars would interleave with the evaluation's own
        try:
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ParcError(f"cannot load the causal LM in {directory} ({str(exc).splitlines()[0]})") from None
        return self.prepare(model)

    def prepare(self, model):
        """A newly built module made ready for scoring: Parc's fast path, no cache, eval mode."""
        self.builds += 1
        install_fast_path(model, self.fast_path)
        # Scoring calls (held-out loss, lm-eval's `model(inps)`) use the config's default, and a cache takes Mamba
        # off Parc's fast path onto transformers' sequential scan; decoding asks for the cache explicitly.
        model.config.use_cache = False
        return model.eval()

    def tokenizer(self, directory: Path):
        """The checkpoint's tokenizer; identical tokenizer files give the same (cached) object."""
        from transformers import AutoTokenizer

        from parc.store.fileio import sha256_of_files

        files = sorted(p for p in directory.iterdir() if p.is_file() and p.name in TOKENIZER_FILES)
        key = sha256_of_files(files) if files else str(directory)
        if key not in self.tokenizers:
            try:
                self.tokenizers[key] = AutoTokenizer.from_pretrained(directory)
            except (OSError, ValueError) as exc:
                raise ParcError(f"no usable tokenizer in {directory} ({str(exc).splitlines()[0]})") from None
        return self.tokenizers[key]


def install_fast_path(model, mode: Optional[str]) -> Optional[str]:
    """Parc's fast path (parc.archs) on a module of one of its architectures; other models stay as loaded."""
    from parc import archs

    if mode is None:
        return None
    for name in archs.NAMES:
        spec = archs.get_spec(name)
        if type(model) is spec.model_class:
            return spec.apply_fast_path(model, mode, model.device)
    return None


def max_length_of(config, ref: CheckpointRef) -> int:
    """The context the architecture supports: positions (GPT-NeoX), context_length (RWKV), else the trained
    sequence length of a Parc run (Mamba has no limit), else lm-eval's 2048."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "context_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    config_dict = run_config(ref) or {}
    seq_len = (config_dict.get("data") or {}).get("seq_len")
    return int(seq_len) if seq_len else DEFAULT_MAX_LENGTH
