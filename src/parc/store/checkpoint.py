"""Checkpoints: atomic save/load in Hugging Face format plus the full training state; find newest; prune.

Layout of `<output_dir>/checkpoint-N/` (N = optimizer updates done; 0 is the initialisation):
    config.json, model.safetensors, tokenizer files   -> AutoModelForCausalLM/AutoTokenizer.from_pretrained(dir)
    training_state/optimizer.pt, scheduler.pt          -> torch.load(weights_only=True): tensors and primitives only
    training_state/rng-rank<R>.pt                      -> every rank's python/numpy/torch(/cuda) RNG
    training_state/trainer_state.json                  -> step, tokens, data fingerprint, config, versions
    parc_checkpoint.json                               -> written last: the completion manifest
Everything is written into `.checkpoint-N.partial/` and renamed into place, so a crash mid-write never
leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from parc.errors import ParcError
from parc.store.fileio import atomic_write_json, fsync_dir, fsync_tree, sha256_file

MANIFEST = "parc_checkpoint.json"
STATE_DIR = "training_state"
TRAINER_STATE = f"{STATE_DIR}/trainer_state.json"  # step, tokens, data fingerprint, config, versions
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def step_of(path: Path) -> Optional[int]:
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def read_manifest(path: Path) -> Dict:
    """The completion manifest (parc_checkpoint.json) of a checkpoint directory: the one reader of the file
    that `save` writes (and `prune_train_states` rewrites)."""
    return json.loads((Path(path) / MANIFEST).read_text())


def read_trainer_state(path: Path) -> Optional[Dict]:
    """training_state/trainer_state.json of a checkpoint directory, or None where it has none (pruned, or a
    weights-only checkpoint): the one reader of the file that `save` writes."""
    state = Path(path) / TRAINER_STATE
    return json.loads(state.read_text()) if state.is_file() else None


def is_complete(path: Path) -> bool:
    try:
        return read_manifest(path)["step"] == step_of(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def has_train_state(path: Path) -> bool:
    return (Path(path) / TRAINER_STATE).exists()


def complete_checkpoints(output_dir: Path) -> List[Path]:
    """Complete checkpoints sorted by step (as numbers: checkpoint-10 comes after checkpoint-9)."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if step_of(p) is not None and is_complete(p)]
    return sorted(found, key=step_of)


def newest_resumable(output_dir: Path) -> Optional[Path]:
    resumable = [p for p in complete_checkpoints(output_dir) if has_train_state(p)]
    return resumable[-1] if resumable else None


# --- writing ------------------------------------------------------------------------------------------


def rng_state() -> Dict:
    """This process's RNG streams as tensors and primitives (loadable with weights_only=True)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": (py_version, py_state, py_gauss),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    accelerator,
    output_dir: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    tokenizer_dir: Path,
    trainer_state: Dict,
    scheduled: bool,
    with_train_state: bool = True,
    gathered=(None, None),
) -> Path:
    """Collective: every rank calls it. Rank 0 writes weights and optimizer; each rank its own RNG.

    `gathered` is (an unsharded copy of the model, the full optimizer state) from parc.training.strategy's
    `gathered_states` under FSDP; (None, None) when rank 0 holds both whole (one process, DDP).

    A disk fault (full, quota, read-only, vanished) removes the partial directory and raises a one-line
    parc.store.iofaults.DiskFault; the checkpoints already there are untouched."""
    from parc.store.iofaults import DiskWrites

    partial = Path(output_dir) / f".checkpoint-{step}.partial"
    with DiskWrites(
        f"saving checkpoint-{step} to {output_dir}",
        output_dir,
        cleanup=lambda: shutil.rmtree(partial, ignore_errors=True),
        elsewhere="choose another output_dir=",
        then=lambda: resume_hint(output_dir),
    ):
        return _save(
            accelerator,
            output_dir,
            step,
            model,
            optimizer,
            scheduler,
            tokenizer_dir,
            trainer_state,
            scheduled,
            with_train_state,
            gathered,
        )


def _save(
    accelerator,
    output_dir: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    tokenizer_dir: Path,
    trainer_state: Dict,
    scheduled: bool,
    with_train_state: bool,
    gathered,
) -> Path:
    from parc.store.iofaults import save_torch  # torch.save hides the OSError of a full disk; this keeps it

    final = checkpoint_path(output_dir, step)
    partial = Path(output_dir) / f".checkpoint-{step}.partial"
    full_model, optimizer_state = gathered
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)  # leftovers of a crash mid-write
        (partial / STATE_DIR).mkdir(parents=True)
    accelerator.wait_for_everyone()
    if with_train_state:
        save_torch(rng_state(), partial / STATE_DIR / f"rng-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (full_model if full_model is not None else accelerator.unwrap_model(model)).save_pretrained(
            partial, safe_serialization=True
        )
        for item in Path(tokenizer_dir).iterdir():
            shutil.copy2(item, partial / item.name)
        if with_train_state:
            save_torch(
                optimizer.state_dict() if optimizer_state is None else optimizer_state,
                partial / STATE_DIR / "optimizer.pt",
            )
            save_torch(scheduler.state_dict(), partial / STATE_DIR / "scheduler.pt")
            atomic_write_json(partial / TRAINER_STATE, trainer_state)
        else:
            shutil.rmtree(partial / STATE_DIR)
        files = {
            str(p.relative_to(partial)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(partial.rglob("*"))
            if p.is_file()
        }
        fsync_tree(partial)
        manifest = {
            "step": step,
            "tokens": trainer_state["tokens"],
            "scheduled": scheduled,
            "train_state": with_train_state,
            "files": files,
            "batch_hashes": trainer_state.get("recent_batch_hashes", {}),
        }
        if trainer_state.get("schedule") is not None:
            manifest["schedule"] = trainer_state["schedule"]  # lets `parc.revisions` flag missing revisions
        if trainer_state.get("init_from") is not None:
            manifest["init_from"] = trainer_state["init_from"]  # a branched run: the weights it started from
        if trainer_state.get("branch") is not None:
            manifest["branch"] = trainer_state["branch"]  # an exact branch: parent checkpoint, step, intervention
        atomic_write_json(partial / MANIFEST, manifest)
        if final.exists():  # an earlier save of this very step (e.g. a preemption save), same contents
            shutil.rmtree(final)
        os.replace(partial, final)
        fsync_dir(output_dir)
    accelerator.wait_for_everyone()
    return final


def resume_hint(output_dir: Path) -> str:
    """What the same command does next time, for error messages."""
    found = newest_resumable(output_dir)
    where = f"it resumes from {found.name}" if found is not None else "it starts over"
    return f"run the same command again ({where})"


def weights_only(manifest: Dict) -> Dict:
    """The manifest of the same checkpoint without its training state (pruned locally, or not published)."""
    files = {k: v for k, v in manifest["files"].items() if not k.startswith(STATE_DIR + "/")}
    return {**manifest, "train_state": False, "files": files}


def prune_train_states(output_dir: Path, keep: Optional[int], protect: set = frozenset()) -> List[int]:
    """Drop the optimizer/RNG state of all but the newest `keep` checkpoints; weights always stay."""
    if keep is None:
        return []
    with_state = [p for p in complete_checkpoints(output_dir) if has_train_state(p)]
    pruned = []
    for path in with_state[:-keep]:
        step = step_of(path)
        if step in protect:
            continue
        manifest = weights_only(read_manifest(path))
        atomic_write_json(path / MANIFEST, manifest)  # first: the manifest never lists missing files
        shutil.rmtree(path / STATE_DIR)
        pruned.append(step)
    return pruned


# --- reading ------------------------------------------------------------------------------------------


def safe_load(path: Path):
    """torch.load that can only build tensors and primitives: a checkpoint never runs code.

    A file that cannot be read (empty, truncated, not a torch file) is reported as damaged; one that reads
    but asks for other objects is refused as unsafe."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ParcError(_damaged(path, exc)) from None
        reason = str(exc).splitlines()[0]
        raise ParcError(
            f"refusing to load {path}: it holds objects outside the safe set of tensors and "
            f"primitives ({reason}); use a checkpoint written by parc"
        ) from None
    except Exception as exc:  # EOFError (empty), RuntimeError (truncated zip), OSError (unreadable) ...
        raise ParcError(_damaged(path, exc)) from None


def _damaged(path: Path, exc: BaseException) -> str:
    size = Path(path).stat().st_size if Path(path).is_file() else None
    reason = (
        "it is empty"
        if size == 0
        else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
    )
    return (
        f"{path} is damaged ({reason}): it cannot be loaded; resume from another checkpoint "
        f"(python -m parc.verify {Path(path).parents[2]} checks them all)"
    )


def load_weights(model: torch.nn.Module, checkpoint_dir: Path) -> None:
    """Copy a checkpoint's weights into an already-built model.

    transformers' own loader reads the files, so its renames of legacy names (GPT-NeoX saves
    `embed_out`, loads `lm_head`), shards and tied weights are handled as `from_pretrained` does.
    """
    try:
        loaded = type(model).from_pretrained(checkpoint_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ParcError(f"cannot read the weights in {checkpoint_dir} ({str(exc).splitlines()[0]})") from None
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise ParcError(
            f"checkpoint {checkpoint_dir} does not match this architecture "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); check arch="
        )


def load_train_state(checkpoint_dir: Path, process_index: int) -> Dict:
    state_dir = Path(checkpoint_dir) / STATE_DIR
    trainer_state = read_trainer_state(checkpoint_dir)
    if trainer_state is None:
        raise ParcError(
            f"{checkpoint_dir} holds no {TRAINER_STATE} (its training state was pruned): resume from "
            "a checkpoint that kept it"
        )
    rng_file = state_dir / f"rng-rank{process_index}.pt"
    if not rng_file.exists():  # resuming on more ranks than saved: extra ranks continue rank 0's stream
        rng_file = state_dir / "rng-rank0.pt"
    return {
        "trainer": trainer_state,
        "optimizer": safe_load(state_dir / "optimizer.pt"),
        "scheduler": safe_load(state_dir / "scheduler.pt"),
        "rng": safe_load(rng_file),
    }
