"""Pythia's training data read in place: a Megatron/GPT-NeoX `MMIDIDX` indexed dataset, as a Parc stream.

Format (GPT-NeoX v1.0 `megatron/data/indexed_dataset.py`, megatron-core's `IndexedDataset`): `<prefix>.idx`
holds a 34-byte header -- `b"MMIDIDX\\x00\\x00"`, `<Q` version 1, `<B` dtype code (8 = uint16), `<Q` sequence
count, `<Q` document-index length -- then int32 sizes (tokens per sequence), int64 byte pointers into the
data and the int64 document index. The data is `<prefix>.bin`, or its raw byte split into
`<prefix>-000NN-of-000MM.bin` shards (as `EleutherAI/pile-*-pythia-preshuffled` ships it): both are memory-
mapped and read where they lie, never copied, and a sequence may straddle two shards.

Sequence order:
- the preshuffled dataset (no `data.index_maps`): sequence k is sample k, 2049 tokens each, so Pythia's batch
  viewer's step index i (samples [i*1024, (i+1)*1024)) is Parc's step i + 1 (`python -m parc.batch step=i+1`);
- `data.index_maps=<prefix>`: GPT-NeoX's `GPT2Dataset` over an unshuffled dataset, with its
  `<prefix>_doc_idx.npy`, `_sample_idx.npy` and `_shuffle_idx.npy` (PolyPythias' data-order seeds): sample k
  is the tokens from (document doc_idx[sample_idx[j][0]], offset sample_idx[j][1]) to
  (doc_idx[sample_idx[j+1][0]], sample_idx[j+1][1]) inclusive, j = shuffle_idx[k].

`MegatronStream` is what `BatchPlan` reads (len, sequences, seq_len, content_hash, manifest, tokenizer_dir).
Its manifest, in Parc's `data.dir`, records the fingerprint: file sizes, the header, the sequence count and
the sha256 of the index and of the index maps (hashed once; reused while size and mtime are unchanged).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import List, Optional

import numpy as np

from parc.errors import ParcError
from parc.store.fileio import atomic_write_json, read_json, sha256_file

MAGIC = b"MMIDIDX\x00\x00"
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}
FORMAT = "parc-megatron-view/1"
MAPS = ("doc_idx", "sample_idx", "shuffle_idx")


def read_header(idx_path: Path) -> dict:
    with open(idx_path, "rb") as handle:
        raw = handle.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES or raw[: len(MAGIC)] != MAGIC:
        raise ParcError(
            f"{idx_path} is not a Megatron MMIDIDX index (bad magic): point data.path at the prefix "
            f"of a .idx/.bin pair, without the extension"
        )
    version, code, sequences, documents = struct.unpack("<QBQQ", raw[len(MAGIC) :])
    if version != 1 or code not in DTYPES:
        raise ParcError(f"{idx_path}: unsupported MMIDIDX version {version} or dtype code {code}")
    return {
        "version": version,
        "dtype_code": code,
        "dtype": np.dtype(DTYPES[code]).name,
        "sequences": sequences,
        "documents": documents,
    }


def data_files(prefix: Path) -> List[Path]:
    """`<prefix>.bin`, else the complete, ordered list of `<prefix>-NNNNN-of-MMMMM.bin` shards."""
    merged = prefix.with_name(prefix.name + ".bin")
    if merged.is_file():
        return [merged]
    pattern = re.compile(re.escape(prefix.name) + r"-(\d+)-of-(\d+)\.bin$")
    found = {}
    for path in prefix.parent.glob(prefix.name + "-*-of-*.bin"):
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = (int(match.group(2)), path)
    totals = {total for total, _ in found.values()}
    if not found or len(totals) != 1 or sorted(found) != list(range(totals.pop())):
        raise ParcError(
            f"no {merged.name} and no complete set of {prefix.name}-000NN-of-000MM.bin shards in "
            f"{prefix.parent} (found {len(found)}): download every shard, or merge them into {merged.name}"
        )
    return [found[i][1] for i in sorted(found)]


class IndexedDataset:
    """The sequences of an MMIDIDX dataset, memory-mapped; `get` reads one sequence (or part of it)."""

    def __init__(self, prefix: Path):
        self.prefix = Path(prefix)
        self.idx_path = self.prefix.with_name(self.prefix.name + ".idx")
        if not self.idx_path.is_file():
            raise ParcError(
                f"data.path={self.prefix}: {self.idx_path} does not exist; give the dataset prefix "
                f"(e.g. .../document for document.idx + document.bin)"
            )
        self.header = read_header(self.idx_path)
        n, docs = self.header["sequences"], self.header["documents"]
        self.dtype = np.dtype(self.header["dtype"])
        if self.idx_path.stat().st_size < HEADER_BYTES + n * 12 + docs * 8:
            raise ParcError(f"{self.idx_path} is truncated: download it again")
        self.sizes = np.memmap(self.idx_path, np.int32, "r", HEADER_BYTES, (n,))
        self.pointers = np.memmap(self.idx_path, np.int64, "r", HEADER_BYTES + n * 4, (n,))
        self.doc_idx = np.memmap(self.idx_path, np.int64, "r", HEADER_BYTES + n * 12, (docs,))
        self.files = data_files(self.prefix)
        lengths = [path.stat().st_size for path in self.files]
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        needed = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if n else 0
        if self._starts[-1] < needed:
            raise ParcError(
                f"the data of {self.prefix} holds {self._starts[-1]} bytes but its index needs {needed}: "
                f"a shard is missing or truncated; download it again"
            )
        self._maps = [np.memmap(path, np.uint8, "r") for path in self.files]

    def __len__(self) -> int:
        return self.header["sequences"]

    def get(self, index: int, offset: int = 0, length: Optional[int] = None) -> np.ndarray:
        """Tokens [offset, offset + length) of sequence `index` (GPT-NeoX's `MMapIndexedDataset.get`)."""
        length = int(self.sizes[index]) - offset if length is None else length
        start = int(self.pointers[index]) + offset * self.dtype.itemsize
        return self._bytes(start, start + length * self.dtype.itemsize).view(self.dtype)

    def _bytes(self, start: int, end: int) -> np.ndarray:
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        pieces = []
        while start < end:  # a sequence may run across the raw split between two shards
            stop = min(end, int(self._starts[first + 1]))
            pieces.append(self._maps[first][start - self._starts[first] : stop - self._starts[first]])
            start, first = stop, first + 1
        return np.concatenate(pieces) if pieces else np.empty(0, np.uint8)


class IndexMaps:
    """GPT-NeoX `GPT2Dataset` samples: seq_len + 1 tokens stitched across documents by the three index maps."""

    def __init__(self, prefix: str, dataset: IndexedDataset, seq_len: int):
        self.paths = {name: Path(f"{prefix}_{name}.npy") for name in MAPS}
        missing = [str(p) for p in self.paths.values() if not p.is_file()]
        if missing:
            raise ParcError(
                f"data.index_maps={prefix}: missing {', '.join(missing)}; give the common prefix of "
                f"the NeoX *_doc_idx.npy, *_sample_idx.npy and *_shuffle_idx.npy files"
            )
        self.dataset, self.seq_len = dataset, seq_len
        self.doc_idx, self.sample_idx, self.shuffle_idx = (np.load(self.paths[name], mmap_mode="r") for name in MAPS)

    def __len__(self) -> int:
        return len(self.shuffle_idx)

    def sample(self, k: int) -> np.ndarray:
        j = int(self.shuffle_idx[k])
        (doc_f, off_f), (doc_l, off_l) = self.sample_idx[j], self.sample_idx[j + 1]
        get = self.dataset.get
        if doc_f == doc_l:
            return get(int(self.doc_idx[doc_f]), offset=int(off_f), length=int(off_l - off_f + 1))
        parts = [get(int(self.doc_idx[doc_f]), offset=int(off_f))]
        parts += [get(int(self.doc_idx[d])) for d in range(int(doc_f) + 1, int(doc_l))]
        parts.append(get(int(self.doc_idx[doc_l]), length=int(off_l + 1)))
        return np.concatenate(parts)


class MegatronStream:
    """An indexed dataset (optionally through index maps) with the interface of `PackedStream`."""

    def __init__(self, cfg, manifest: dict, dataset: IndexedDataset, maps: Optional[IndexMaps]):
        self.dir = Path(cfg.data.dir)
        self.manifest, self.dataset, self.maps = manifest, dataset, maps
        self.tokenizer_dir = self.dir / manifest["tokenizer"]["dir"]
        self.seq_len = cfg.data.seq_len + 1  # stored row width: inputs row[:-1], labels row[1:]
        self.num_sequences = manifest["num_sequences"]
        self.content_hash = manifest["content_sha256"]

    def __len__(self) -> int:
        return self.num_sequences

    def sequences(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.seq_len), dtype=np.int64)
        for row, k in enumerate(indices):
            tokens = self.maps.sample(int(k)) if self.maps is not None else self.dataset.get(int(k))
            if len(tokens) != self.seq_len:
                raise ParcError(
                    f"sample {k} of {self.dataset.prefix} has {len(tokens)} tokens, not data.seq_len + 1 = "
                    f"{self.seq_len}: set data.seq_len={len(tokens) - 1}"
                )
            out[row] = tokens
        return out


def _cached_sha256(path: Path, previous: dict) -> dict:
    """{size, mtime_ns, sha256} of `path`, reusing the previous manifest's hash while size and mtime agree."""
    stat = path.stat()
    record = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    old = previous.get(str(path), {})
    same = old.get("size") == record["size"] and old.get("mtime_ns") == record["mtime_ns"]
    record["sha256"] = old["sha256"] if same and old.get("sha256") else sha256_file(path)
    return record


def fingerprint(dataset: IndexedDataset, maps: Optional[IndexMaps], previous: Optional[dict]) -> dict:
    """What identifies the data: header, sizes, sha256 of the index (and maps), sample count."""
    known = {entry["path"]: entry for entry in (previous or {}).get("hashed", [])}
    hashed = [_cached_sha256(dataset.idx_path, known)]
    if maps is not None:
        hashed += [_cached_sha256(maps.paths[name], known) for name in MAPS]
    source = {
        "prefix": str(dataset.prefix),
        "header": dataset.header,
        "bin_files": [{"name": p.name, "size": p.stat().st_size} for p in dataset.files],
    }
    identity = {
        "header": dataset.header,
        "bin_bytes": int(dataset._starts[-1]),
        "hashes": [(Path(h["path"]).name, h["sha256"]) for h in hashed],
    }
    content = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {"source": source, "hashed": hashed, "content_sha256": content}


def open_megatron(cfg) -> MegatronStream:
    """Open `data.path` (and `data.index_maps`) for this run; writes only Parc's manifest and tokenizer copy."""
    from parc.data.tokenizer import TRAIN_BPE, obtain_tokenizer

    d = cfg.data
    if not d.path:
        raise ParcError(
            "data=pile_pythia needs data.path=<prefix> (the indexed dataset without .bin/.idx, "
            "e.g. /data/pile-deduped-preshuffled/document)"
        )
    if d.tokenizer == TRAIN_BPE:
        raise ParcError(
            "data.format=megatron holds token ids already: set data.tokenizer to the tokenizer that "
            "made them (a hub id or a local directory), not train-bpe"
        )
    dataset = IndexedDataset(Path(d.path).expanduser())
    maps = IndexMaps(str(Path(d.index_maps).expanduser()), dataset, d.seq_len) if d.index_maps else None
    root = Path(d.dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    previous = read_json(manifest_path) if manifest_path.is_file() else None
    tokenizer = obtain_tokenizer(d, root, corpus=lambda: [])
    found = fingerprint(dataset, maps, previous)
    manifest = {
        "format": FORMAT,
        **found,
        "seq_len": d.seq_len,
        "sample_tokens": d.seq_len + 1,
        "num_sequences": len(maps) if maps is not None else len(dataset),
        "index_maps": d.index_maps,
        "tokenizer": {
            "dir": "tokenizer",
            "name": d.tokenizer,
            "len": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
        },
    }
    if manifest != previous:
        atomic_write_json(manifest_path, manifest)
    if maps is None and len(dataset) and not np.all(dataset.sizes == d.seq_len + 1):
        raise ParcError(
            f"{dataset.idx_path} holds sequences of other lengths than data.seq_len + 1 = {d.seq_len + 1}: "
            f"a preshuffled Pythia dataset has 2049-token samples; for documents give data.index_maps="
        )
    return MegatronStream(cfg, manifest, dataset, maps)


def megatron_status(cfg) -> str:
    """One line for the dry-run plan; reads only headers and file sizes (hashes nothing)."""
    try:
        dataset = IndexedDataset(Path(cfg.data.path)) if cfg.data.path else None
    except ParcError as exc:
        return f"not usable: {exc}"
    if dataset is None:
        return "data.path is not set: pass data.path=<prefix of the .idx/.bin pair>"
    header = dataset.header
    return (
        f"{dataset.prefix} ({len(dataset.files)} .bin file(s)): {header['sequences']} sequences, "
        f"{header['dtype']}" + (f", index maps {cfg.data.index_maps}" if cfg.data.index_maps else "")
    )
