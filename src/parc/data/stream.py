"""Reading a prepared stream: manifest checks against the run's config, and the batch of every step in O(1).

`open_stream(cfg)` memory-maps the packed sequences in `cfg.data.dir` after checking that they are what the
config asks for (seq_len, packing, tokenizer, vocab size, source); any mismatch or missing data is refused
with a one-line ParcError saying how to prepare the right data (parc.data.prepare's `ensure_prepared` is
what the trainer calls: it prepares the data in-process first when `data.auto_prepare` is set).

`BatchPlan` fixes which sequences each optimizer step sees: shard k is the k-th disjoint slice of
`global_batch_size * max_steps + holdout` sequences of the stream; `data_seed=None` keeps stream order (as Parc
did), an int permutes within the shard. With `data.holdout` H > 0, H rows of the slice drawn without replacement by
`default_rng([data.holdout_seed, shard])` are never trained (the panel's never-trained controls); the others, in
stream order, are the training rows the data_seed permutation orders (H = 0: the slice is exactly the training rows,
as before). Step N (1-based) is the batch of optimizer update N, whatever the world
size; each rank takes its contiguous part of that global batch. `BatchPlan.from_config` adds the config's canaries
and intervention (parc.data.edits), which change batches on the steps they name and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np

from parc.data.hashing import batch_hash
from parc.data.tokenizer import tokenizer_sha256, tokenizer_spec
from parc.errors import ParcError

MANIFEST = "manifest.json"
FORMAT = "parc-packed-stream/1"


def config_identity(data_cfg) -> List[tuple]:
    """(label, path into a manifest or part record, value this config needs, override that sets it)."""
    tok = tokenizer_spec(data_cfg)
    return [
        ("seq_len", ("seq_len",), data_cfg.seq_len, "data.seq_len"),
        ("packing", ("packing",), data_cfg.packing, "data.packing"),
        ("tokenizer", ("tokenizer", "name"), tok["name"], "data.tokenizer"),
        (
            "trained tokenizer vocab",
            ("tokenizer", "train_vocab_size"),
            tok["train_vocab_size"],
            "data.tokenizer_vocab_size",
        ),
        ("vocab_size (len(tokenizer))", ("tokenizer", "len"), data_cfg.vocab_size, "data.vocab_size"),
        ("dataset", ("source", "dataset"), data_cfg.dataset, "data.dataset"),
        ("dataset config", ("source", "dataset_config"), data_cfg.dataset_config, "data.dataset_config"),
        ("split", ("source", "split"), data_cfg.split, "data.split"),
        ("text column", ("source", "text_column"), data_cfg.text_column, "data.text_column"),
        ("max_documents", ("source", "max_documents"), data_cfg.max_documents, "data.max_documents"),
    ]


def check_identity(record: dict, cfg, where: Path) -> None:
    """Refuse a manifest (or part record) made with settings other than `cfg`'s, naming both fixes."""
    for label, path, needed, override in config_identity(cfg.data):
        found = record
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if found != needed:
            raise ParcError(
                f"data at {where} was prepared with {label} {found!r}, this run needs {needed!r}: use "
                f"{override}={found if found is not None else 'null'} to train on it, or prepare matching data with "
                f"`{prepare_command(cfg, with_dir=False)} data.dir=<new dir>` and train with that data.dir"
            )


def prepare_command(cfg, with_dir: bool = True) -> str:
    """The `python -m parc.prepare ...` line that prepares the data this config asks for."""
    keys = [
        "dataset",
        "dataset_config",
        "data_files",
        "split",
        "text_column",
        "streaming",
        "max_documents",
        "tokenizer",
        "tokenizer_vocab_size",
        "vocab_size",
        "seq_len",
        "packing",
    ] + (["dir"] if with_dir else [])
    default = _data_group_defaults(cfg.data.name)  # name only what differs, so the line stays short
    differing = [f"data.{k}={_override_value(cfg.data[k])}" for k in keys if default.get(k) != cfg.data[k]]
    return " ".join(["python -m parc.prepare", f"data={cfg.data.name}", *differing])


def _data_group_defaults(name: str) -> dict:
    """`parc/configs/data/<name>.yaml` as composed with default paths; read without Hydra, which may be running us."""
    from omegaconf import OmegaConf

    from parc.config import CONFIG_DIR, DataConfig, PathsConfig, register_schema

    path = CONFIG_DIR / "data" / f"{name}.yaml"
    if not path.is_file():
        return {}
    register_schema()  # the ${parc_package:} resolver used by the demo's data_files
    tree = OmegaConf.create(
        {
            "paths": OmegaConf.structured(PathsConfig),
            "data": OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(path)),
        }
    )
    return OmegaConf.to_container(tree, resolve=True)["data"]


def data_status(cfg) -> str:
    """One line for the dry-run plan: is this run's data prepared and usable? Reads manifest.json only."""
    if cfg.data.format == "megatron":
        from parc.data.megatron import megatron_status

        return megatron_status(cfg)
    root = Path(cfg.data.dir)
    manifest = read_manifest(root)
    if manifest is None:
        how = "prepared on first use (data.auto_prepare)" if cfg.data.auto_prepare else f"run {prepare_command(cfg)}"
        return f"{root}: not prepared; {how}"
    try:
        check_identity(manifest, cfg, root)
    except ParcError as exc:
        return f"{root}: not usable: {exc}"
    holdout = int(cfg.data.get("holdout") or 0)
    per_shard = cfg.trainer.global_batch_size * cfg.trainer.max_steps + holdout
    shards = manifest["num_sequences"] // per_shard
    named = f"data.shard={cfg.data.shard}" + (f" with data.holdout={holdout}" if holdout else "")
    verdict = "" if cfg.data.shard < shards else f"; {named} is beyond the data"
    return (
        f"{root}: {manifest['num_sequences']} sequences x {manifest['seq_len']} tokens = {shards} shard(s) "
        f"of {per_shard}{verdict}"
    )


def _override_value(value) -> str:
    from omegaconf import ListConfig

    if isinstance(value, (list, ListConfig)):  # Hydra's list syntax (data.data_files may be a list)
        return "[" + ",".join(map(_override_value, value)) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class PackedStream:
    """The memory-mapped packed sequences of a prepared directory, in stream order."""

    def __init__(self, root: Path, manifest: dict):
        self.dir = Path(root)
        self.manifest = manifest
        self.tokenizer_dir = self.dir / manifest["tokenizer"]["dir"]
        self.seq_len = int(manifest["seq_len"])
        self.dtype = np.dtype(manifest["dtype"])
        self.num_sequences = int(manifest["num_sequences"])
        self.content_hash = manifest["content_sha256"]
        self._arrays = []
        for entry in manifest["files"]:
            path = self.dir / entry["path"]
            expected = entry["sequences"] * self.seq_len * self.dtype.itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise ParcError(
                    f"data at {self.dir} is incomplete ({entry['path']} is missing or truncated): "
                    f"delete {self.dir} and run python -m parc.prepare again"
                )
            self._arrays.append(np.memmap(path, dtype=self.dtype, mode="r", shape=(entry["sequences"], self.seq_len)))
        self._ends = np.cumsum([entry["sequences"] for entry in manifest["files"]], dtype=np.int64)

    def __len__(self) -> int:
        return self.num_sequences

    def sequences(self, indices: np.ndarray) -> np.ndarray:
        """Rows `indices` of the stream as int64 [len(indices), seq_len]; reads only those rows."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.seq_len), dtype=np.int64)
        which = np.searchsorted(self._ends, indices, side="right")
        for f in np.unique(which):
            mask = which == f
            start = self._ends[f - 1] if f else 0
            out[mask] = self._arrays[f][indices[mask] - start]
        return out


def read_manifest(root: Path) -> Optional[dict]:
    path = Path(root) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def open_stream(cfg) -> PackedStream:
    """Open `cfg.data.dir` after checking it against `cfg`; missing or mismatching data is a ParcError."""
    if cfg.data.format == "megatron":  # an indexed dataset read in place (Pythia's), see parc.data.megatron
        from parc.data.megatron import open_megatron

        return open_megatron(cfg)
    root = Path(cfg.data.dir)
    manifest = read_manifest(root)
    if manifest is None:
        raise ParcError(f"no prepared data at {root} (manifest.json missing): run {prepare_command(cfg)}")
    if manifest.get("format") != FORMAT:
        raise ParcError(
            f"data at {root} has format {manifest.get('format')!r}, not {FORMAT}: "
            f"delete {root} and run {prepare_command(cfg)}"
        )
    check_identity(manifest, cfg, root)
    stream = PackedStream(root, manifest)
    if tokenizer_sha256(stream.tokenizer_dir) != manifest["tokenizer"]["sha256"]:
        raise ParcError(
            f"{stream.tokenizer_dir}/tokenizer.json changed after the data was prepared: "
            f"delete {root} and run {prepare_command(cfg)}"
        )
    return stream


class BatchPlan:
    """The global batch of every optimizer step of one run: shard, order, held-out rows and per-rank slices."""

    def __init__(
        self,
        stream: PackedStream,
        shard: int,
        data_seed: Optional[int],
        global_batch_size: int,
        max_steps: int,
        edits=None,
        holdout: int = 0,
        holdout_seed: int = 0,
    ):
        self.stream, self.shard, self.data_seed = stream, shard, data_seed
        self.global_batch_size, self.max_steps = global_batch_size, max_steps
        self.holdout, self.holdout_seed = int(holdout), int(holdout_seed)
        self.sequences_per_shard = global_batch_size * max_steps  # training rows (positions) of the run
        self.slice_length = self.sequences_per_shard + self.holdout  # its slice of the stream: training + held out
        self._check_fits(len(stream))
        self.first = shard * self.slice_length
        # The holdout depends only on (holdout_seed, shard, slice length) and the permutation only on
        # (data_seed, number of training rows), never on the world size; both computed once.
        self._held = (
            np.sort(
                np.random.default_rng([self.holdout_seed, shard]).choice(self.slice_length, self.holdout, replace=False)
            )
            if self.holdout
            else np.zeros(0, dtype=np.int64)
        )
        self._order = (
            None if data_seed is None else np.random.default_rng(data_seed).permutation(self.sequences_per_shard)
        )
        if self.holdout:  # the training rows' within-slice indices, then in data_seed order
            kept = np.setdiff1d(np.arange(self.slice_length, dtype=np.int64), self._held, assume_unique=True)
            self._order = kept if self._order is None else kept[self._order]
        self.edits = edits(self) if callable(edits) else None  # canaries / an intervention (parc.data.edits)

    def _check_fits(self, length: int) -> None:
        """Refuse a shard (and holdout) beyond the stream with the fix; `holdout` < 0 is refused too."""
        if self.holdout < 0:
            raise ParcError(f"data.holdout={self.holdout}: give a number of held-out rows >= 0 (0: none)")
        available = length // self.slice_length
        if 0 <= self.shard < available:
            return
        held = f" + data.holdout {self.holdout}" if self.holdout else ""
        fix = (
            f"choose data.shard below {available}, or prepare more documents"
            if available
            else "prepare more documents, or shorten the run" + (" or lower data.holdout" if self.holdout else "")
        )
        raise ParcError(
            f"data.shard={self.shard} is beyond the data: {self.stream.dir} holds {length} sequences = {available} "
            f"shard(s) of {self.slice_length} (trainer.global_batch_size {self.global_batch_size} x "
            f"trainer.max_steps {self.max_steps}{held}): {fix}"
        )

    @classmethod
    def from_config(cls, cfg, stream: PackedStream) -> "BatchPlan":
        """The plan of `cfg`, with its canaries (data.canaries) and intervention (intervention=) if any."""
        from parc.data.canaries import CanarySpec
        from parc.data.edits import Intervention, PlanEdits

        canaries, change = (
            CanarySpec.from_config(cfg.data.get("canaries")),
            Intervention.from_config(cfg.get("intervention")),
        )
        eos = stream.manifest.get("tokenizer", {}).get("eos_token_id")
        t = cfg.trainer
        return cls(
            stream,
            cfg.data.shard,
            cfg.data.data_seed,
            t.global_batch_size,
            t.max_steps,
            edits=lambda plan: PlanEdits.build(plan, canaries, change, cfg.data.vocab_size, eos),
            holdout=int(cfg.data.get("holdout") or 0),
            holdout_seed=int(cfg.data.get("holdout_seed") or 0),
        )

    def base_within(self) -> np.ndarray:
        """The base plan's within-slice index of every training position (the data_seed order, or stream order)."""
        return self._order if self._order is not None else np.arange(self.sequences_per_shard, dtype=np.int64)

    @property
    def held_out(self) -> np.ndarray:
        """The stream rows of the run's slice that no step trains (data.holdout), sorted; empty without one."""
        return self.first + self._held

    def indices(self, step: int) -> np.ndarray:
        """Stream indices of the sequences of step `step` (1-based), in batch order (before canaries overwrite)."""
        if not isinstance(step, (int, np.integer)) or not 1 <= step <= self.max_steps:
            raise ParcError(
                f"step={step} is out of range: steps are 1-based (step N is the batch of optimizer "
                f"update N); choose 1..{self.max_steps}"
            )
        within = np.arange((step - 1) * self.global_batch_size, step * self.global_batch_size, dtype=np.int64)
        if self.edits is not None and self.edits.position_map is not None:
            within = self.edits.position_map[within]
        if self._order is not None:
            within = self._order[within]
        return self.first + within if self.edits is None else self.edits.replace(self.first + within)

    def _rows(self, step: int, lo: int, hi: int) -> np.ndarray:
        rows = self.stream.sequences(self.indices(step)[lo:hi])
        return rows if self.edits is None else self.edits.overwrite(step, rows, lo)

    def batch(self, step: int) -> np.ndarray:
        """The global batch of step `step`: int64 [global_batch_size, seq_len]."""
        return self._rows(step, 0, self.global_batch_size)

    def rank_batch(self, step: int, rank: int, world_size: int) -> np.ndarray:
        """Rank `rank`'s contiguous part of the global batch of `step`."""
        if world_size < 1 or self.global_batch_size % world_size or not 0 <= rank < world_size:
            raise ParcError(
                f"cannot split a global batch of {self.global_batch_size} over {world_size} processes "
                f"(rank {rank}): choose a world size that divides trainer.global_batch_size"
            )
        per_rank = self.global_batch_size // world_size
        return self._rows(step, rank * per_rank, (rank + 1) * per_rank)

    def batch_hash(self, step: int) -> str:
        return batch_hash(self.batch(step))

    def canary_rows(self, step: int) -> dict:
        """{row: canary id} of the canaries planted in step `step`'s batch (empty without data.canaries)."""
        return {} if self.edits is None else self.edits.canary_rows(step)

    def fingerprint(self) -> dict:
        """What determines every batch; stored in checkpoints and compared on resume."""
        base = self._base_fingerprint()
        return base if self.edits is None else {**base, **self.edits.fingerprint(self)}

    def prefix(self, step: int) -> dict:
        """What determines the batches of steps 1..`step` only: a branch from checkpoint-`step` must match it."""
        base = self._base_fingerprint()
        return base if self.edits is None else {**base, **self.edits.fingerprint(self, upto=step)}

    def _base_fingerprint(self) -> dict:
        return {
            "stream": self.stream.content_hash,
            "shard": self.shard,
            "data_seed": self.data_seed,
            "seq_len": self.stream.seq_len,
            "global_batch_size": self.global_batch_size,
            # The shard's start and the permutation depend on its length (global batch x max_steps).
            "sequences_per_shard": self.sequences_per_shard,
            # Only with a holdout, so the fingerprint of every run without one is what it was.
            **({"holdout": {"rows": self.holdout, "seed": self.holdout_seed}} if self.holdout else {}),
        }
