"""Pythia's data format: MMIDIDX datasets written by megatron-core's own IndexedDatasetBuilder (an independent
writer), read by parc (merged .bin or raw shards, NeoX index maps), checked against a direct read of the bytes."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from parc.errors import ParcError
from parc.store.metricsfile import read_metrics

from conftest import run_cli

IndexedDatasetBuilder = pytest.importorskip("megatron.core.datasets.indexed_dataset").IndexedDatasetBuilder

SEQ, BATCH, STEPS = 16, 4, 5  # samples of SEQ + 1 tokens, as Pythia's 2049 = 2048 + 1
VOCAB = 2048


def write_dataset(prefix, documents):
    """megatron-core's writer: one document per list of sequences."""
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for sequences in documents:
        for tokens in sequences:
            builder.add_item(torch.tensor(tokens, dtype=torch.int64))
        builder.end_document()
    builder.finalize(f"{prefix}.idx")


def read_reference(prefix, data: bytes = None):
    """The format read directly, as documented (header, int32 sizes, int64 pointers), with plain file reads."""
    with open(f"{prefix}.idx", "rb") as handle:
        assert handle.read(9) == b"MMIDIDX\x00\x00"
        version, code, count, _ = struct.unpack("<QBQQ", handle.read(25))
        assert (version, code) == (1, 8)
        sizes = struct.unpack(f"<{count}i", handle.read(4 * count))
        pointers = struct.unpack(f"<{count}q", handle.read(8 * count))
    data = open(f"{prefix}.bin", "rb").read() if data is None else data
    return [list(struct.unpack(f"<{n}H", data[p : p + 2 * n])) for n, p in zip(sizes, pointers)]


def overrides(root, tokenizer, *extra):
    return [
        "data=pile_pythia",
        "arch=pythia",
        "arch.size=tiny",
        f"data.path={root / 'pile' / 'document'}",
        f"data.tokenizer={tokenizer}",
        f"data.vocab_size={VOCAB}",
        f"data.seq_len={SEQ}",
        f"data.dir={root / 'cache'}",
        f"trainer.global_batch_size={BATCH}",
        f"trainer.max_steps={STEPS}",
        f"paths.root={root}",
        *extra,
    ]


def show_batch(root, tokenizer, step, *extra):
    """`python -m parc.batch step=N out=...`, in this process (the CLI's own function; saves the start-up)."""
    from parc.training.batch_view import show_batch as parc_batch

    out = root / f"batch-{step}.npy"
    parc_batch(step, overrides(root, tokenizer, *extra), out=out)
    return np.load(out)


@pytest.fixture
def preshuffled(tmp_path, demo_root):
    """A Pythia-style preshuffled dataset: every sequence SEQ + 1 tokens, one per document."""
    (tmp_path / "pile").mkdir()
    rng = np.random.default_rng(0)
    samples = rng.integers(0, VOCAB, size=(BATCH * STEPS + 3, SEQ + 1))
    write_dataset(tmp_path / "pile" / "document", [[row] for row in samples])
    return tmp_path, demo_root / "data" / "demo-parc-128" / "tokenizer"


def test_batch_of_step_n_is_pythia_index_n_minus_1(preshuffled):
    root, tokenizer = preshuffled
    reference = np.array(read_reference(root / "pile" / "document"))
    for step in (1, 4):  # Pythia's batch viewer: index i = samples [i*B, (i+1)*B) = Parc step i + 1
        assert np.array_equal(show_batch(root, tokenizer, step), reference[(step - 1) * BATCH : step * BATCH])
    manifest = json.loads((root / "cache" / "manifest.json").read_text())
    idx_bytes = (root / "pile" / "document.idx").read_bytes()
    assert manifest["hashed"][0]["sha256"] == hashlib.sha256(idx_bytes).hexdigest()
    assert manifest["num_sequences"] == len(reference)
    assert manifest["source"]["header"]["sequences"] == len(reference)


def test_raw_shards_read_in_place_equal_the_merged_file(preshuffled):
    root, tokenizer = preshuffled
    prefix = root / "pile" / "document"
    merged = (root / "pile" / "document.bin").read_bytes()
    expected = show_batch(root, tokenizer, 3)
    cuts = [0, 101, 333, len(merged)]  # odd byte offsets: a token and a sample straddle each cut
    for i in range(3):
        (root / "pile" / f"document-{i:05d}-of-00003.bin").write_bytes(merged[cuts[i] : cuts[i + 1]])
    (root / "pile" / "document.bin").unlink()
    assert np.array_equal(show_batch(root, tokenizer, 3), expected)
    assert np.array_equal(expected, np.array(read_reference(prefix, merged))[2 * BATCH : 3 * BATCH])
    (root / "pile" / "document-00001-of-00003.bin").unlink()
    with pytest.raises(ParcError, match="complete set of document-000NN-of-000MM.bin shards"):
        show_batch(root, tokenizer, 1)


def test_neox_index_maps_give_the_seeded_order_over_documents(tmp_path, demo_root):
    """PolyPythias: GPT2Dataset samples over unshuffled documents; the reference cuts the concatenated stream."""
    (tmp_path / "pile").mkdir()
    rng = np.random.default_rng(1)
    documents = [rng.integers(0, VOCAB, size=int(n)) for n in rng.integers(3, 40, size=30)]
    write_dataset(tmp_path / "pile" / "document", [[doc] for doc in documents])
    doc_idx = rng.permutation(len(documents))  # NeoX's shuffled document order (one epoch)
    stream = np.concatenate([documents[d] for d in doc_idx])
    starts = np.concatenate([[0], np.cumsum([len(documents[d]) for d in doc_idx])])
    n_samples = (len(stream) - 1) // SEQ
    # sample_idx[j] = (position in doc_idx, offset) of stream token j * SEQ, as NeoX's _build_sample_idx
    sample_idx = np.array(
        [
            (
                np.searchsorted(starts, j * SEQ, side="right") - 1,
                j * SEQ - starts[np.searchsorted(starts, j * SEQ, side="right") - 1],
            )
            for j in range(n_samples + 1)
        ],
        dtype=np.int32,
    )
    shuffle_idx = rng.permutation(n_samples)
    for name, array in (("doc_idx", doc_idx), ("sample_idx", sample_idx), ("shuffle_idx", shuffle_idx)):
        np.save(tmp_path / f"maps_{name}.npy", array)
    tokenizer = demo_root / "data" / "demo-parc-128" / "tokenizer"
    steps = n_samples // BATCH
    batch = show_batch(tmp_path, tokenizer, 2, f"data.index_maps={tmp_path / 'maps'}", f"trainer.max_steps={steps}")
    expected = [stream[j * SEQ : j * SEQ + SEQ + 1] for j in shuffle_idx[BATCH : 2 * BATCH]]
    assert np.array_equal(batch, np.array(expected))


def test_training_reads_the_indexed_dataset(preshuffled, tmp_path):
    """2049-token rows train as inputs row[:-1] -> labels row[1:]; the metrics' batch hash is that of the raw samples."""
    from parc.data.stream import batch_hash

    root, tokenizer = preshuffled
    out = tmp_path / "run"
    result = run_cli(
        "parc.train",
        *overrides(
            root,
            tokenizer,
            f"output_dir={out}",
            "trainer.max_steps=2",
            "trainer.micro_batch_size=2",
            "trainer.progress=false",
            "checkpoint.every=2",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reference = np.array(read_reference(root / "pile" / "document"))
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["batch_hash"] for r in rows] == [batch_hash(reference[:BATCH]), batch_hash(reference[BATCH : 2 * BATCH])]
    assert rows[0]["tokens"] == BATCH * SEQ  # predicted tokens per step: 1024 x 2048 for Pythia


def test_missing_path_and_bad_files_are_one_line_errors(tmp_path, demo_root):
    tokenizer = demo_root / "data" / "demo-parc-128" / "tokenizer"
    args = [a for a in overrides(tmp_path, tokenizer) if not a.startswith("data.path=")]
    result = run_cli("parc.batch", "step=1", *args)
    assert result.returncode == 2 and "data.path=<prefix>" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "pile").mkdir()
    (tmp_path / "pile" / "document.idx").write_bytes(b"NOTANIDX" + bytes(40))
    with pytest.raises(ParcError, match="not a Megatron MMIDIDX index"):
        show_batch(tmp_path, tokenizer, 1)
    assert not (tmp_path / "cache").exists()  # nothing written
