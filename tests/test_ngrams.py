"""n-grams from the training stream: index counts vs brute force, stupid backoff vs a direct reference, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parc.config import compose
from parc.data import BatchPlan, open_stream, prepare_data
from parc.data.tokenizer import load_saved_tokenizer
from parc.study.phases.ngram_backoff import backoff_logprob
from parc.study.phases.ngram_index import build_index
from parc.study.phases.stimuli import Stimulus, write_stimuli

from conftest import run_cli, run_cli_cases

# Another tokenizer (three plays, a 300-token BPE): a real prepared stream in seconds.
OTHER = ["data=demo", "data.max_documents=3", "data.seq_len=32", "data.tokenizer_vocab_size=300", "data.vocab_size=300"]
GRID_STEPS = 8  # conftest's eval_grid: demo runs of 8 steps


@pytest.fixture(scope="module")
def demo(demo_root):
    """The prepared demo stream (conftest), the eval grid's batch plan and the tokenizer."""
    cfg = compose(["experiment=demo", f"paths.root={demo_root}", f"trainer.max_steps={GRID_STEPS}"])
    stream = open_stream(cfg)
    return demo_root, cfg, stream, BatchPlan.from_config(cfg, stream), load_saved_tokenizer(stream.tokenizer_dir)


def brute_count(rows: np.ndarray, ids, word_end: bool, continuation: np.ndarray) -> int:
    """Occurrences of `ids` inside rows (never across two), optionally not followed by a word continuation."""
    n = len(ids)
    if n > rows.shape[1]:
        return 0
    windows = np.lib.stride_tricks.sliding_window_view(rows, n, axis=1)
    hit = (windows == np.asarray(ids)).all(axis=-1)
    if word_end:
        following = np.full(hit.shape, -1)
        following[:, :-1] = rows[:, n:]
        hit &= ~((following >= 0) & continuation[np.maximum(following, 0)])
    return int(hit.sum())


def continuation_reference(tokenizer, vocab: int) -> np.ndarray:
    """Tokens that carry on a word: text starts with a letter, or an apostrophe then a letter."""
    out = np.zeros(vocab, dtype=bool)
    for i in range(1, vocab):
        text = tokenizer.decode([i])
        out[i] = len(text) > 0 and (text[0].isalpha() or (len(text) > 1 and text[0] == "'" and text[1].isalpha()))
    return out


def test_index_counts_equal_brute_force(demo, tmp_path):
    _, cfg, stream, _, tokenizer = demo
    rows = stream.sequences(np.arange(300))
    index = build_index(
        tmp_path / "index",
        [rows[:120], rows[120:]],
        {"test": True},
        stream.tokenizer_dir,
        cfg.data.vocab_size,
        log=lambda line: None,
    )
    assert index.num_tokens == rows.size
    continuation = continuation_reference(tokenizer, cfg.data.vocab_size)
    rng = np.random.default_rng(0)
    queries = []
    for n in (1, 2, 3, 5):  # n-grams that occur, picked at random positions
        for _ in range(40):
            r, c = rng.integers(len(rows)), rng.integers(rows.shape[1] - n + 1)
            queries.append(rows[r, c : c + n].tolist())
    queries += [rng.integers(1, cfg.data.vocab_size, size=3).tolist() for _ in range(20)]  # mostly absent
    queries += [list(tokenizer.encode(text)) for text in (" the", " king", " the king", " my lord", " I")]
    queries.append(rows[3, -2:].tolist() + rows[4, :2].tolist())  # spans two sequences: never counted as one
    for ids in queries:
        for word_end in (False, True):
            assert index.count(ids, word_end) == brute_count(rows, ids, word_end, continuation), (ids, word_end)
    assert any(index.count(q, True) != index.count(q, False) for q in queries)  # the boundary matters somewhere


def reference_logprob(words, order, count, total, alpha=0.4):
    """The paper's stupid backoff, written recursively from its definition."""
    n = min(order, len(words))

    def estimate(m, backoffs):
        if m == 1:
            return backoffs * math.log(alpha) + math.log(max(count(words[-1:]), 1)) - math.log(total)
        joint = count(words[-m:])
        if joint == 0:
            return estimate(m - 1, backoffs + 1)
        return backoffs * math.log(alpha) + math.log(joint) - math.log(count(words[-m:-1]))

    return estimate(n, 0)


def test_backoff_formula_on_known_counts():
    counts = {("a",): 10, ("b",): 4, ("a", "b"): 2, ("c",): 0, ("x", "a", "b"): 0, ("x", "a"): 3}
    count = lambda words: counts.get(tuple(words), 0)  # noqa: E731
    total = 100
    assert backoff_logprob(["a", "b"], 2, count, total) == pytest.approx(math.log(2 / 10))
    assert backoff_logprob(["x", "a", "b"], 3, count, total) == pytest.approx(math.log(0.4) + math.log(2 / 10))
    assert backoff_logprob(["x", "a", "c"], 3, count, total) == pytest.approx(2 * math.log(0.4) + math.log(1 / 100))
    assert backoff_logprob(["b"], 5, count, total) == pytest.approx(math.log(4 / 100))  # n capped by the length
    for words in (["a", "b"], ["x", "a", "b"], ["x", "a", "c"], ["q", "x", "a", "b"]):
        for order in (1, 2, 3, 4, 5):
            assert backoff_logprob(words, order, count, total) == pytest.approx(
                reference_logprob(words, order, count, total)
            )


def stimuli_file(path: Path, tokenizer, rows: np.ndarray, n: int = 25) -> list:
    """Stimuli made of words seen in the stream, plus one word never seen."""
    text = tokenizer.decode(rows[:40].ravel().tolist())
    words = [w for w in text.split() if w.isalpha() and w.islower()]
    rng = np.random.default_rng(1)
    stimuli = []
    for i in range(n):
        start = int(rng.integers(0, len(words) - 8))
        chosen = words[start : start + int(rng.integers(1, 8))] + (["zqxjv"] if i == 0 else [])
        stimuli.append(Stimulus(i, " ".join(chosen[:-1]), chosen[-1], " ".join(chosen), "train"))
    write_stimuli(path, stimuli)
    return stimuli


def test_cli_runs_stream_matches_reference(demo, eval_grid, tmp_path):
    """runs= counts exactly the run's batches of steps 1..upto_step; log-probs equal a direct computation."""
    root, cfg, stream, plan, tokenizer = demo
    seen = np.concatenate([plan.batch(step) for step in (1, 2, 3, 4, 5)])
    stimuli = stimuli_file(tmp_path / "s.stims", tokenizer, seen)
    out = tmp_path / "analysis"
    run = eval_grid / "pythia-seed0-shard0"
    result = run_cli(
        "parc.ngrams",
        f"stimuli={tmp_path / 's.stims'}",
        f"runs={run}",
        "upto_step=5",
        f"out={out}",
        f"paths.root={root}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_parquet(out / "ngrams.parquet")
    assert list(table.columns) == ["stimulus_id", "order", "logprob"] and len(table) == 5 * len(stimuli)
    continuation = continuation_reference(tokenizer, cfg.data.vocab_size)

    def count(words):
        ids = [i for w in words for i in tokenizer.encode(" " + w)]
        return brute_count(seen, ids, True, continuation)

    got = table.set_index(["stimulus_id", "order"])["logprob"]
    for s in stimuli:
        words = [*s.context.split(), s.target]
        for order in range(1, 6):
            assert got[(s.id, order)] == pytest.approx(reference_logprob(words, order, count, seen.size), abs=1e-12)
    assert got[(0, 1)] == pytest.approx(math.log(1 / seen.size))  # the unseen word: count floored to 1
    again = run_cli(
        "parc.ngrams",
        f"stimuli={tmp_path / 's.stims'}",
        f"runs={run}",
        "upto_step=5",
        f"out={out}",
        f"paths.root={root}",
    )
    assert again.returncode == 0 and "up to date" in again.stdout


def test_cli_bad_input(demo, eval_grid, tmp_path):
    root = demo[0]
    tiny_run = eval_grid / "pythia-seed0-shard0"
    data = [f"paths.root={root}"]
    (tmp_path / "nomark.stims").write_text("The cat sat on the *mat*\nno target here\n")
    (tmp_path / "empty.stims").write_text("\n")
    good = tmp_path / "good.stims"
    good.write_text("The cat sat on the *mat*\n")
    out = tmp_path / "out"
    cases = {
        "nomark": ("parc.ngrams", f"stimuli={tmp_path / 'nomark.stims'}", f"runs={tiny_run}", f"out={out}", *data),
        "empty": ("parc.ngrams", f"stimuli={tmp_path / 'empty.stims'}", f"runs={tiny_run}", f"out={out}", *data),
        "beyond": ("parc.ngrams", f"stimuli={good}", f"runs={tiny_run}", "upto_step=9", f"out={out}", *data),
        "no index": ("parc.ngrams", f"stimuli={good}", f"runs={tiny_run}", f"index={tmp_path}", f"out={out}", *data),
    }
    # An index over a stream with another tokenizer: the run's tokenizer differs -> refused, nothing written.
    other = compose([*OTHER, f"paths.root={tmp_path}"])
    prepare_data(other)
    foreign = build_index(
        tmp_path / "foreign",
        [open_stream(other).sequences(np.arange(10))],
        {},
        open_stream(other).tokenizer_dir,
        300,
        log=lambda line: None,
    )
    cases["foreign index"] = (
        "parc.ngrams",
        f"stimuli={good}",
        f"runs={tiny_run}",
        f"index={foreign.directory}",
        f"out={out}",
        *data,
    )
    # every case in one interpreter, in turn (their cost is the imports); nothing may be written by any
    for name, result in zip(cases, run_cli_cases(None, cases.values())):
        assert result.returncode == 2, (name, result.stderr[-1500:])
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, name
    foreign_refusal = result.stderr
    assert "tokenizer" in foreign_refusal and "differs" in foreign_refusal, foreign_refusal
    assert not out.exists()


def demo_texts() -> list:
    import gzip
    import json

    corpus = Path(__file__).resolve().parents[1] / "src" / "parc" / "demo_corpus" / "shakespeare.jsonl.gz"
    return [json.loads(line)["text"] for line in gzip.open(corpus, "rt")]


def test_corpus_stream_leaves_out_the_stimuli_documents(demo, tmp_path):
    """corpus=stream: every sequence but the source document's; a phrase found only in that document counts 0,
    and the coverage in ngrams.json equals a brute-force count over the counted rows."""
    from parc.study.phases.ngram_backoff import WordCounter
    from parc.study.phases.ngram_index import NgramIndex
    from parc.study.phases.stimuli import read_origins
    from parc.study.phases.stimulus_sets import document_rows

    root, cfg, stream, _, tokenizer = demo
    texts = demo_texts()
    source = 3
    ((first, end),) = document_rows(cfg, stream, [source]).values()
    # independently: the document's full 128-token pieces, after those of the documents before it
    pieces = [len(tokenizer(t)["input_ids"]) // cfg.data.seq_len for t in texts[: source + 1]]
    assert (first, end) == (sum(pieces[:-1]), sum(pieces))
    assert np.array_equal(stream.sequences([first])[0], tokenizer(texts[source])["input_ids"][: cfg.data.seq_len])
    others = " ".join(" ".join(t.split()) for i, t in enumerate(texts) if i != source)
    own_rows = stream.sequences(np.arange(first, end))
    continuation = continuation_reference(tokenizer, cfg.data.vocab_size)
    ids_of = lambda words: [i for w in words for i in tokenizer.encode(" " + w)]  # noqa: E731
    unique = []  # lines of the source document (early, so inside its full pieces) found in no other document
    for line in texts[source][:20000].split("\n"):
        words = line.split()
        if len(words) >= 7 and all(w.isalpha() for w in words[1:7]):
            phrase = words[1:7]
            if " ".join(phrase) not in others and brute_count(own_rows, ids_of(phrase), True, continuation) > 0:
                unique.append(phrase)
    assert len(unique) >= 3
    stimuli = [Stimulus(i, " ".join(p[:-1]), p[-1], " ".join(p), "train") for i, p in enumerate(unique[:3])]
    common = ["the", "king", "is", "come", "my", "lord"]  # a phrase of another play too
    stimuli.append(Stimulus(3, " ".join(common[:-1]), common[-1], " ".join(common), "train"))
    path = tmp_path / "leak.stims"
    write_stimuli(
        path,
        stimuli,
        origins={
            "stream": stream.content_hash,
            "seq_len": cfg.data.seq_len,
            "documents": [[source]] * len(stimuli),
            "rows": {str(source): [first, end]},
        },
    )
    assert read_origins(path)["rows"] == {str(source): [first, end]}
    out = tmp_path / "analysis"
    result = run_cli("parc.ngrams", f"stimuli={path}", "data=demo", f"paths.root={root}", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"leaving out {end - first} sequences" in result.stdout
    record = json.loads((out / "ngrams.json").read_text())
    assert record["index"]["selection"]["excluded_documents"] == [source]
    (index_dir,) = (out / "ngram_index").iterdir()
    index = NgramIndex(index_dir)
    counted = stream.sequences(np.setdiff1d(np.arange(len(stream)), np.arange(first, end)))
    assert index.num_tokens == counted.size
    counter = WordCounter(index, tokenizer)
    for stimulus in stimuli[:3]:
        words = [*stimulus.context.split(), stimulus.target]
        assert counter.count(tuple(words)) == 0  # only in its source document: never counted
        assert counter.count(tuple(words[-1:])) == brute_count(counted, ids_of(words[-1:]), True, continuation)
    words_of = [[*s.context.split(), s.target] for s in stimuli]
    for order in range(1, 6):
        seen = [brute_count(counted, ids_of(w[-order:]), True, continuation) > 0 for w in words_of]
        assert record["coverage"][str(order)] == pytest.approx(np.mean(seen)), order
    assert record["coverage"]["5"] <= 0.25 and record["coverage"]["1"] == 1.0
    # a set from another stream cannot name its documents in this one: refused, nothing written
    write_stimuli(
        path,
        stimuli,
        origins={"stream": "0" * 64, "seq_len": 128, "documents": [[source]] * 4, "rows": {str(source): [first, end]}},
    )
    result = run_cli("parc.ngrams", f"stimuli={path}", "data=demo", f"paths.root={root}", f"out={tmp_path / 'x'}")
    assert result.returncode == 2 and "another prepared stream" in result.stderr and not (tmp_path / "x").exists()
    for bad in ("corpus=everything", "corpus=consumed"):
        result = run_cli(
            "parc.ngrams", f"stimuli={path}", "data=demo", bad, f"paths.root={root}", f"out={tmp_path / 'x'}"
        )
        assert result.returncode == 2 and result.stderr.startswith("error: corpus="), result.stderr
