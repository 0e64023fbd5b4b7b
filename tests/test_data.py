"""The data layer in-process: packing rules, prepare (parts, reruns, crashes), manifest checks, BatchPlan."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parc import batch as batch_cli
from parc import prepare as prepare_cli
from parc.config import compose
from parc.data import BatchPlan, data_status, ensure_prepared, open_stream, prepare_data
from parc.data.prepare import batch_encoder, cut_full, encode_ahead, join_with_eos, pack_parc
from parc.data.tokenizer import load_saved_tokenizer, train_bpe
from parc.errors import ParcError

DEMO = Path(__file__).resolve().parents[1] / "src/parc/demo_corpus/shakespeare.jsonl.gz"
# Three plays, 32-token sequences, a 300-token BPE, files of 40 sequences (so batches straddle files).
TINY = [
    "data=demo",
    "data.max_documents=3",
    "data.seq_len=32",
    "data.tokenizer_vocab_size=300",
    "data.vocab_size=300",
    "data.max_file_bytes=2560",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=2",
    "trainer.max_steps=5",
]


def tiny_cfg(data_dir: Path, *extra: str):
    return compose([*TINY, f"data.dir={data_dir}", *extra])


def demo_texts(n: int):
    with gzip.open(DEMO, "rt") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(n), handle)]


def tree(root: Path) -> dict:
    """Every file under root with its size and mtime: equal snapshots mean nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def stream_bytes(root: Path) -> bytes:
    manifest = json.loads((root / "manifest.json").read_text())
    return b"".join((root / f["path"]).read_bytes() for f in manifest["files"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One tiny prepared stream shared by the read-only tests."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "caches" / "datasets"))
        cfg = tiny_cfg(root)
        report = prepare_data(cfg, progress=False)
    assert report.status == "prepared"
    return cfg, open_stream(cfg)


# ---- packing rules -----------------------------------------------------------------------------------------


def test_parc_rule_equals_truncation_with_overflowing_tokens():
    tokenizer = train_bpe(demo_texts(1), vocab_size=300)
    seq_len = 8
    words = "to be or not to be that is the question whether tis nobler in the mind".split()
    candidates = [""] + [" ".join(words[: n % len(words) + 1] * (n // len(words) + 1)) for n in range(60)]
    lengths = [len(tokenizer(doc)["input_ids"]) for doc in candidates]
    # One document of each kind: empty, shorter than seq_len, an exact multiple, and one with a tail.
    kinds = {
        "empty": lambda n: n == 0,
        "short": lambda n: 0 < n < seq_len,
        "exact": lambda n: n >= 2 * seq_len and n % seq_len == 0,
        "tail": lambda n: n > 2 * seq_len and n % seq_len,
    }
    docs = [next(doc for doc, n in zip(candidates, lengths) if test(n)) for test in kinds.values()]

    ours = pack_parc([tokenizer(doc)["input_ids"] for doc in docs], seq_len)
    parc = [
        chunk
        for doc in docs
        for chunk in tokenizer(doc, truncation=True, max_length=seq_len, return_overflowing_tokens=True)["input_ids"]
        if len(chunk) == seq_len
    ]
    assert len(parc) >= 4
    np.testing.assert_array_equal(ours, np.array(parc))
    assert tokenizer.eos_token_id == 0 and not (ours == 0).any()  # no EOS inserted


def test_batch_encoder_gives_the_ids_of_the_tokenizer_call():
    tokenizer = train_bpe(demo_texts(1), vocab_size=300)
    texts = [*demo_texts(2), "", "  leading and trailing  ", "naïve café — ünïcödé 😀", "line\nbreaks\r\n\ttabs"]
    assert batch_encoder(tokenizer)(texts) == tokenizer(texts)["input_ids"]


def test_encode_ahead_keeps_the_order_and_raises_the_encoders_error():
    batches = [["a"], ["b", "c"], [], ["d"]]
    encode = lambda texts: [[ord(t)] for t in texts]  # noqa: E731
    assert list(encode_ahead(iter(batches), encode)) == [(b, encode(b)) for b in batches]

    def fail(texts):
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        list(encode_ahead(iter(batches), fail))


def test_concat_rule_joins_with_eos_and_keeps_full_pieces():
    joined = join_with_eos([[1, 2, 3], [4, 5], [], [6, 7, 8, 9]], eos_id=0)
    np.testing.assert_array_equal(joined, [1, 2, 3, 0, 4, 5, 0, 0, 6, 7, 8, 9, 0])
    pieces, rest = cut_full(joined, 4)
    np.testing.assert_array_equal(pieces, [[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
    np.testing.assert_array_equal(rest, [0])


# ---- the prepared stream -----------------------------------------------------------------------------------


def test_stream_is_the_parc_packing_of_the_documents(prepared):
    cfg, stream = prepared
    manifest = stream.manifest
    tokenizer = load_saved_tokenizer(stream.tokenizer_dir)  # offline, from the data dir
    assert len(tokenizer) == 300 and tokenizer.eos_token_id == tokenizer.bos_token_id == tokenizer.pad_token_id == 0
    token_lists = [tokenizer(text)["input_ids"] for text in demo_texts(3)]
    expected = pack_parc(token_lists, 32)
    np.testing.assert_array_equal(stream.sequences(np.arange(len(stream))), expected)
    assert manifest["num_sequences"] == len(expected) and manifest["dtype"] == "uint16"
    assert manifest["tokens"] == {"in": sum(map(len, token_lists)), "kept": expected.size}
    assert manifest["source"]["documents"] == 3 and manifest["packing"] == "parc"
    assert len(manifest["files"]) > 1 and all(f["sequences"] <= 40 for f in manifest["files"])
    for entry in manifest["files"]:
        assert hashlib.sha256((stream.dir / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert hashlib.sha256(stream_bytes(stream.dir)).hexdigest() == manifest["content_sha256"]
    tokenizer_json = (stream.tokenizer_dir / "tokenizer.json").read_bytes()
    assert manifest["tokenizer"]["sha256"] == hashlib.sha256(tokenizer_json).hexdigest()


def test_batch_lookup_equals_sequential_iteration(prepared):
    cfg, stream = prepared
    plan = BatchPlan(stream, shard=2, data_seed=None, global_batch_size=4, max_steps=5)
    shard_rows = stream.sequences(np.arange(40, 60))  # shard 2 of 20-sequence shards, in stream order
    sequential = [shard_rows[i : i + 4] for i in range(0, 20, 4)]
    for step in range(1, 6):
        batch = plan.batch(step)
        assert batch.dtype == np.int64 and batch.shape == (4, 32)
        np.testing.assert_array_equal(batch, sequential[step - 1])
    with pytest.raises(ParcError, match=r"1-based .* choose 1\.\.5"):
        plan.batch(0)
    with pytest.raises(ParcError, match=r"choose 1\.\.5"):
        plan.batch(6)


def test_shards_are_disjoint_and_the_last_is_refused_with_the_count(prepared):
    cfg, stream = prepared
    plans = [BatchPlan(stream, k, None, 4, 5) for k in range(3)]
    index_sets = [np.concatenate([p.indices(s) for s in range(1, 6)]) for p in plans]
    np.testing.assert_array_equal(np.concatenate(index_sets), np.arange(60))  # consecutive, disjoint, from 0
    shards = len(stream) // 20
    with pytest.raises(ParcError, match=f"holds {len(stream)} sequences = {shards} shard"):
        BatchPlan(stream, shards, None, 4, 5)


def test_data_seed_permutes_within_the_shard_deterministically(prepared):
    cfg, stream = prepared

    def order(seed):
        return np.concatenate([BatchPlan(stream, 1, seed, 4, 5).indices(s) for s in range(1, 6)])

    first, again, other = order(7), order(7), order(8)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(np.sort(first), np.arange(20, 40))  # a permutation of shard 1
    assert not np.array_equal(first, np.arange(20, 40)) and not np.array_equal(first, other)


def test_rank_batches_tile_the_global_batch(prepared):
    cfg, stream = prepared
    plan = BatchPlan(stream, 0, 3, 4, 5)
    for world_size in (1, 2, 4):
        parts = [plan.rank_batch(3, rank, world_size) for rank in range(world_size)]
        np.testing.assert_array_equal(np.concatenate(parts), plan.batch(3))
    with pytest.raises(ParcError, match="divides trainer.global_batch_size"):
        plan.rank_batch(3, 0, 3)


def test_batch_hash_and_fingerprint(prepared):
    cfg, stream = prepared
    plan = BatchPlan.from_config(cfg, stream)
    batch = plan.batch(2)
    assert plan.batch_hash(2) == hashlib.sha256(batch.astype("<i4").tobytes()).hexdigest()[:16]
    assert plan.batch_hash(2) != plan.batch_hash(3)
    assert plan.fingerprint() == {
        "stream": stream.manifest["content_sha256"],
        "shard": 0,
        "data_seed": None,
        "seq_len": 32,
        "global_batch_size": 4,
        "sequences_per_shard": 20,
    }


# ---- prepare: reruns, parts, crashes -----------------------------------------------------------------------


def test_rerun_of_a_finished_prepare_does_nothing(prepared):
    cfg, stream = prepared
    before = tree(stream.dir)
    report = prepare_data(cfg, progress=False)
    assert report.status == "already" and "nothing to do" in report.summary
    assert tree(stream.dir) == before


@pytest.mark.parametrize("packing", ["parc", "concat"])
def test_parts_concatenate_to_the_single_run_stream(tmp_path, packing):
    single = tiny_cfg(tmp_path / "single", f"data.packing={packing}")
    assert prepare_data(single, progress=False).status == "prepared"
    split_dir = tmp_path / "split"
    middle = prepare_data(
        tiny_cfg(split_dir, f"data.packing={packing}", "prepare.part=1", "prepare.num_parts=3"), progress=False
    )
    assert middle.status == "partial" and "parts still missing: 0, 2" in middle.summary
    assert not (split_dir / "manifest.json").exists()
    before = tree(split_dir)
    again = prepare_data(
        tiny_cfg(split_dir, f"data.packing={packing}", "prepare.part=1", "prepare.num_parts=3"), progress=False
    )
    assert "already prepared: nothing to do" in again.summary and tree(split_dir) == before  # not redone
    # A plain run finishes the missing parts of the existing 3-way split, then assembles the stream.
    final = prepare_data(tiny_cfg(split_dir, f"data.packing={packing}"), progress=False)
    assert final.status == "prepared" and final.manifest["num_parts"] == 3
    assert sorted(p.name for p in (split_dir / "parts").iterdir()) == [f"part-{i}-of-3" for i in range(3)]
    assert stream_bytes(split_dir) == stream_bytes(tmp_path / "single")
    assert (
        final.manifest["content_sha256"]
        == json.loads((tmp_path / "single/manifest.json").read_text())["content_sha256"]
    )
    if packing == "concat":  # independently: EOS-joined documents cut into full pieces
        tokenizer = load_saved_tokenizer(split_dir / "tokenizer")
        joined = join_with_eos([tokenizer(t)["input_ids"] for t in demo_texts(3)], 0)
        expected, _ = cut_full(joined, 32)
        np.testing.assert_array_equal(
            open_stream(tiny_cfg(split_dir, "data.packing=concat")).sequences(np.arange(len(expected))), expected
        )


def test_crash_mid_part_leaves_nothing_that_looks_complete(prepared, tmp_path):
    cfg, stream = prepared
    texts = demo_texts(3)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in [texts[0], texts[1], None]))
    root = tmp_path / "data"
    crash_cfg = compose(
        [
            *TINY,
            f"data.dir={root}",
            "data.dataset=json",
            f"data.data_files={corpus}",
            f"data.tokenizer={stream.tokenizer_dir}",
            "prepare.batch_size=1",
        ]
    )
    with pytest.raises((TypeError, ValueError)):  # the third document is not text: tokenizing it fails
        prepare_data(crash_cfg, progress=False)
    assert not (root / "manifest.json").exists() and not (root / "parts/part-0-of-1").exists()
    leftovers = list((root / "parts").glob(".tmp-part-0-of-1-*"))
    assert leftovers and any(p.suffix == ".bin" for p in leftovers[0].iterdir())  # data was being written
    with pytest.raises(ParcError, match="no prepared data"):
        open_stream(crash_cfg)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(f"{leftovers[0].as_posix().rsplit('-', 1)[0]}-{dead.stdout.strip()}")  # left by a dead process
    stale.mkdir()
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert prepare_data(crash_cfg, progress=False).status == "prepared"
    assert not list((root / "parts").glob(".tmp-*"))
    assert stream_bytes(root) == stream_bytes(stream.dir)  # same documents, same tokenizer: same stream


# ---- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, named",
    [
        ("data.seq_len=64", "seq_len 32, this run needs 64"),
        ("data.tokenizer=EleutherAI/pythia-160m", "tokenizer 'train-bpe'"),
        ("data.tokenizer_vocab_size=512", "trained tokenizer vocab 300"),
        ("data.vocab_size=512", "vocab_size (len(tokenizer)) 300"),
    ],
)
def test_mismatching_data_is_refused_in_one_line_and_nothing_written(prepared, tmp_path, capsys, override, named):
    cfg, stream = prepared
    before = tree(stream.dir)
    out = tmp_path / "batch.npy"
    args = [*TINY, f"data.dir={stream.dir}", override]
    for main, extra in ((batch_cli.main, ["step=1", f"out={out}"]), (prepare_cli.main, [])):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err and "parc.prepare" in err
    assert not out.exists() and tree(stream.dir) == before


@pytest.mark.parametrize(
    "override, named",
    [("prepare.part=2", "0 <= part < num_parts"), ("data.max_file_bytes=10", "smaller than one sequence")],
)
def test_bad_prepare_request_is_refused_before_anything_is_written(tmp_path, capsys, override, named):
    with pytest.raises(SystemExit) as exit_info:
        prepare_cli.main([*TINY, f"data.dir={tmp_path / 'data'}", "prepare.num_parts=2", override])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err
    assert list(tmp_path.iterdir()) == []


def test_ensure_prepared_prepares_only_when_auto_prepare(tmp_path, capsys):
    with pytest.raises(ParcError, match=r"no prepared data at .*: run python -m parc.prepare data=demo"):
        ensure_prepared(tiny_cfg(tmp_path / "off", "data.auto_prepare=false"))
    assert not (tmp_path / "off").exists()
    stream = ensure_prepared(tiny_cfg(tmp_path / "on"))  # the demo group sets auto_prepare: true
    assert len(stream) > 0 and "prepared" in capsys.readouterr().out


def test_data_status_for_the_dry_run(prepared, tmp_path):
    cfg, stream = prepared
    assert data_status(cfg) == f"{stream.dir}: {len(stream)} sequences x 32 tokens = {len(stream) // 20} shard(s) of 20"
    assert "not prepared; prepared on first use" in data_status(tiny_cfg(tmp_path / "none"))
    assert "not usable: " in data_status(tiny_cfg(stream.dir, "data.seq_len=64"))
    assert not (tmp_path / "none").exists()


def test_the_shipped_bible_is_the_whole_king_james_version():
    """The corpus experiment=mini_parc adds to the plays (scripts/build-kjv-corpus.py): 66 books in canonical
    order, 1,189 chapters (one paragraph each), the first and last verses where they belong."""
    corpus = Path(__file__).resolve().parents[1] / "src" / "parc" / "demo_corpus" / "kjv.jsonl.gz"
    books = [json.loads(line) for line in gzip.open(corpus, "rt")]
    assert len(books) == 66 and [b["title"] for b in (books[0], books[38], books[39], books[-1])] == [
        "Genesis",
        "Malachi",
        "Matthew",
        "Revelation",
    ]
    chapters = [text.split("\n\n")[1:] for text in (b["text"].strip() for b in books)]
    assert sum(map(len, chapters)) == 1189 and len(chapters[18]) == 150  # the Psalms
    assert chapters[0][0].startswith("In the beginning God created the heaven and the earth. And the earth")
    assert chapters[-1][-1].endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert len({b["id"] for b in books}) == 66 and all(b["text"].startswith(b["title"].upper()) for b in books)
