"""The .stims / paper TSV formats, and `python -m parc.stimuli` building a NaWoCo-style set from held-out text."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from parc.errors import ParcError
from parc.stimuli import main as stimuli_main
from parc.study.phases.stimuli import UNSPLIT, parse_stimuli_arg, read_stimuli, set_name, write_stimuli

from conftest import run_cli

PAPER_LINES = [
    "The flat unraised spirits that *hath*",
    "He said that it *didn't*",
    "*Hello*",
    "Tabs\\there and *there\\n*",
    'A "quoted" word, then *this.*',
]


def test_reads_paper_stims_lines_as_the_paper_split_them(tmp_path):
    path = tmp_path / "all_stims.stims"
    path.write_text("\n".join(PAPER_LINES))  # the paper wrote no final newline
    stimuli = read_stimuli(path)
    assert [(s.id, s.context, s.target, s.split) for s in stimuli] == [
        (0, "The flat unraised spirits that", "hath", UNSPLIT),
        (1, "He said that it", "didn't", UNSPLIT),
        (2, "", "Hello", UNSPLIT),
        (3, "Tabs\there and", "there\n", UNSPLIT),
        (4, 'A "quoted" word, then', "this.", UNSPLIT),
    ]
    # FullSentence of the paper: the line without asterisks (escapes undone)
    assert [s.sentence for s in stimuli] == [
        line.replace("*", "").replace("\\t", "\t").replace("\\n", "\n") for line in PAPER_LINES
    ]


def test_reads_the_papers_tsv_marking_the_last_word(tmp_path):
    path = tmp_path / "final_dataset.tsv"
    path.write_text('Set\tSentence\ntrain\tThe cat sat on the mat\nval\t"A ""quoted"" word here"\n')
    stimuli = read_stimuli(path)
    assert [(s.context, s.target, s.split) for s in stimuli] == [
        ("The cat sat on the", "mat", "train"),
        ('A "quoted" word', "here", "val"),
    ]


def test_writer_round_trips_and_the_sidecar_gives_splits(tmp_path):
    source = tmp_path / "src.tsv"
    source.write_text(
        "Set\tSentence\ntrain\tOne two three four five\nval\tSix seven eight nine ten\ntest\tIt's a word that's odd\n"
    )
    stimuli = read_stimuli(source)
    written = write_stimuli(tmp_path / "out" / "demo.stims", stimuli)
    assert [p.name for p in written] == ["demo.stims", "demo.tsv"]
    assert (
        tmp_path / "out" / "demo.stims"
    ).read_text() == "One two three four *five*\nSix seven eight nine *ten*\nIt's a word that's *odd*"
    assert (tmp_path / "out" / "demo.tsv").read_text() == source.read_text()
    again = read_stimuli(tmp_path / "out" / "demo.stims")
    assert [(s.sentence, s.split) for s in again] == [(s.sentence, s.split) for s in stimuli]
    assert read_stimuli(tmp_path / "out" / "demo.tsv") == again


@pytest.mark.parametrize(
    "content, line",
    [
        ("The cat sat *on*\nno target here\n", 2),
        ("A *marked* word then more\n", 1),
        ("Good *one*\nTwo * stars *here*\n", 2),
        ("Good *one*\n\nThird *line*\n", 2),
    ],
)
def test_lines_without_a_marked_final_target_are_refused_naming_the_line(tmp_path, content, line):
    path = tmp_path / "bad.stims"
    path.write_text(content)
    with pytest.raises(ParcError, match=rf"bad\.stims line {line}: .* no marked final target"):
        read_stimuli(path)


def test_empty_and_missing_files_and_bad_sidecars_are_refused(tmp_path):
    (tmp_path / "empty.stims").write_text("\n\n")
    with pytest.raises(ParcError, match="is empty"):
        read_stimuli(tmp_path / "empty.stims")
    with pytest.raises(ParcError, match="does not exist"):
        read_stimuli(tmp_path / "nope.stims")
    (tmp_path / "x.stims").write_text("One two three four *five*\n")
    (tmp_path / "x.tsv").write_text("Set\tSentence\ntrain\tSomething else entirely\n")
    with pytest.raises(ParcError, match="is not .*x.stims line 1"):
        read_stimuli(tmp_path / "x.stims")
    with pytest.raises(ParcError, match="twice"):
        parse_stimuli_arg("a/x.stims,b/x.tsv")
    assert [set_name(p) for p in parse_stimuli_arg("a/all_stims.stims, b.tsv")] == ["all_stims", "b"]


# --- building -------------------------------------------------------------------------------------------

DEMO_SHARD_SEQUENCES = 16 * 200  # experiment=demo: global_batch_size x max_steps


def independent_document_split(root: Path):
    """(held-out texts, training texts) recomputed from scratch: tokenize the plays, count full 128-pieces."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(root / "data" / "demo-parc-128" / "tokenizer"))
    corpus = Path(__file__).resolve().parents[1] / "src" / "parc" / "demo_corpus" / "shakespeare.jsonl.gz"
    texts = [json.loads(line)["text"] for line in gzip.open(corpus, "rt")]
    training, start = [], 0
    for text in texts:
        if start >= DEMO_SHARD_SEQUENCES:
            break
        pieces = len(tokenizer(text)["input_ids"]) // 128
        if pieces:
            training.append(text)
        start += pieces
    return [t for t in texts if t not in training], training


def tokenizer_of(root: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(root / "data" / "demo-parc-128" / "tokenizer"))


def fragments(text: str):
    for line in text.split("\n"):
        yield from line.split(".")


@pytest.mark.slow
def test_builds_a_deterministic_nawoco_set_from_held_out_plays(demo_root, tmp_path):
    out = tmp_path / "stimuli" / "demo.stims"
    args = ["parc.stimuli", "data=demo", f"paths.root={demo_root}", "train=40", "val=20", "test=10"]
    result = run_cli(*args, f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    stimuli = read_stimuli(out)
    assert [s.split for s in stimuli] == ["train"] * 40 + ["val"] * 20 + ["test"] * 10
    assert len({s.sentence for s in stimuli}) == 70

    held_out, training = independent_document_split(demo_root)
    assert 0 < len(training) < 42
    sources = {" ".join(f.split()) for text in held_out for f in fragments(text) if f[:1].isupper()}
    training_text = " ".join(" ".join(t.split()) for t in training)
    for s in stimuli:
        words = s.sentence.split(" ")
        assert len(words) >= 5 and re.fullmatch(r"[A-Za-z'’]*", words[0]) and words[0][0].isupper()
        assert all(re.fullmatch(r"[a-z'’]+", w) for w in words[1:]), s
        # a prefix of a held-out sentence of more than 5 words, cut right after the target
        assert any(
            src.startswith(s.sentence) and len(src.split()) > 5 and src.split()[: len(words)] == words
            for src in sources
        ), s
        assert s.sentence not in training_text, s
    # origins: each stimulus's recorded documents are held-out plays holding its sentence, at those stream rows
    from parc.study.phases.stimuli import read_origins

    origins = read_origins(out)
    texts = [
        json.loads(line)["text"]
        for line in gzip.open(
            Path(__file__).resolve().parents[1] / "src" / "parc" / "demo_corpus" / "shakespeare.jsonl.gz", "rt"
        )
    ]
    assert len(origins["documents"]) == len(stimuli)
    for s, documents in zip(stimuli, origins["documents"]):
        assert documents and all(texts[d] in held_out and s.sentence in " ".join(texts[d].split()) for d in documents)
    pieces = [len(tokenizer_of(demo_root)(t)["input_ids"]) // 128 for t in texts]
    for document, (first, end) in origins["rows"].items():
        assert (first, end) == (sum(pieces[: int(document)]), sum(pieces[: int(document) + 1]))

    # the same command again (in-process: the imports are paid once) gives the same bytes; another seed does not
    again, other = tmp_path / "again" / "demo.stims", tmp_path / "other" / "demo.stims"
    stimuli_main([*args[1:], f"out={again}"])
    stimuli_main([*args[1:], "sample_seed=7", f"out={other}"])
    assert again.read_bytes() == out.read_bytes()
    assert again.with_suffix(".tsv").read_bytes() == out.with_suffix(".tsv").read_bytes()
    assert other.read_bytes() != out.read_bytes()


def test_asking_for_more_stimuli_than_the_held_out_text_gives_is_refused(demo_root, tmp_path, capsys):
    out = tmp_path / "big" / "demo.stims"
    with pytest.raises(SystemExit) as exit_info:
        stimuli_main(["data=demo", f"paths.root={demo_root}", "train=10000000", f"out={out}"])
    assert exit_info.value.code == 2
    # datasets draws its "Generating train split" bar first when its cache is new: the error is the one last line
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: only ") and [ln for ln in lines if "error" in ln] == lines[-1:]
    assert all(ln.startswith("Generating train split") for ln in lines[:-1]), lines
    assert not out.parent.exists()


def test_the_verbatim_filter_agrees_with_a_substring_search():
    from parc.study.phases.stimulus_sets import not_in_text

    texts = ["Then the king  said unto\nhis men, go forth and sing", "Athens shall fall to the\tsea ere long"]
    joined = " ".join(" ".join(t.split()) for t in texts)
    rng = np.random.default_rng(0)
    words = joined.split(" ")
    phrases = [
        "then the king said unto",
        "he king said unto his",  # cut first word: still a substring
        "Then the king said unto hi",
        "sing Athens shall fall to",  # cut last word; across two texts
        "the king said unto her",
        "Athens shall fall to the sea ere long",
        "go forth and sing loudly",
    ]
    for _ in range(300):  # random windows of the text, some with a word changed
        start, size = int(rng.integers(0, len(words) - 5)), int(rng.integers(5, 8))
        window = words[start : start + size]
        if rng.random() < 0.3:
            window[int(rng.integers(0, len(window)))] = "x"
        phrases.append(" ".join(window))
    assert not_in_text(phrases, texts) == [p not in joined for p in phrases]
    assert not_in_text(phrases[:4], texts) == [True, False, False, False]
