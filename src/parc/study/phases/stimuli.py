"""Stimulus sets for the Parc paper's analysis: the `.stims` format, its split sidecar, and the paper's TSV.

Formats (read and written as the paper's scripts did, so existing stimuli interoperate):

- `.stims` (the paper's `all_stims.stims`): one stimulus per line, the context words then the target word,
  marked `*word*`, always the last word: `The flat unraised spirits that *hath*`. Literal `\\n`, `\\r`, `\\t`
  are unescaped on reading, as `calculate_surprisal.py` did.
- The paper's TSV (`final_dataset.tsv`, written by pandas): columns `Set` (train / val / test) and
  `Sentence` (the stimulus without asterisks; its last word is the target). Same stimuli, same order.

Splits: a set is ONE `.stims` file holding every split (train first, then val, then test, as the paper's
`all_stims.stims`), plus the sidecar `<same name>.tsv` in the paper's TSV layout giving each line's split.
`read_stimuli("x.stims")` reads the sidecar `x.tsv` when it exists (and checks that it lists the same
sentences), else every stimulus gets split `"unsplit"`. `read_stimuli("x.tsv")` reads the TSV alone.
Origins: a set `parc.stimuli` built also has `<same name>.origins.json`: the prepared stream it was drawn
from (content hash), each stimulus's source documents (corpus indices; a sentence found in several held-out
documents has them all) and the stream rows [first, end) of each, so that n-grams counted over the stream
can leave those documents out (`read_origins`; None for a set built elsewhere, e.g. the paper's).
Several sets are given as `stimuli=a.stims,b.stims` (`parse_stimuli_arg`); each keeps its own 0-based ids
and is named by `set_name(path)` (the file name up to its first dot, as the paper named its outputs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from parc.errors import ParcError

UNSPLIT = "unsplit"  # split of a stimulus read from a .stims file without a sidecar
SPLIT_COLUMN, SENTENCE_COLUMN = "Set", "Sentence"
# The target: the last whitespace-free run, wrapped in asterisks, at the start or after a space.
MARKED_TARGET = re.compile(r"(?:^|(?<= ))\*([^\s*]+)\*$")


@dataclass(frozen=True)
class Stimulus:
    id: int  # 0-based position in its file
    context: str  # the text before the target without the one space before it ("" when the target is first)
    target: str  # the target word as written (no asterisks, no leading space)
    sentence: str  # context + " " + target: the full stimulus text without asterisks
    split: str  # train | val | test | ... | "unsplit"


def set_name(path) -> str:
    """The paper's name of a stimulus set: the file name up to its first dot (`all_stims.stims` -> `all_stims`)."""
    return Path(path).name.split(".")[0]


def parse_stimuli_arg(value: str) -> List[Path]:
    """`stimuli=a.stims,b.stims` -> paths, refusing an empty list and a name given twice."""
    paths = [Path(p) for p in (part.strip() for part in str(value).split(",")) if p]
    if not paths:
        raise ParcError("stimuli= is empty: pass a .stims file or the paper's TSV, e.g. stimuli=stimuli/demo.stims")
    names = [set_name(p) for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ParcError(
            f"stimuli= names the set {repeated[0]!r} twice (outputs are named by the file name up to "
            "its first dot): rename one of the files"
        )
    return paths


def unescape(line: str) -> str:
    return line.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")


def parse_marked(line: str, where: str, index: int, split: str = UNSPLIT) -> Stimulus:
    """One `.stims` line -> Stimulus; a line without a marked final target is refused, naming `where`."""
    match = MARKED_TARGET.search(line)  # on the raw line: an escaped \\n in a target is still one word
    context = line[: max(match.start() - 1, 0)] if match else ""  # drop the one space before the marker
    if match is None or "*" in context:
        raise ParcError(
            f"{where}: {line.strip()[:80]!r} has no marked final target: write the target as the "
            "last word between asterisks, e.g. 'The cat sat on the *mat*'"
        )
    context, target = unescape(context), unescape(match.group(1))
    return Stimulus(index, context, target, f"{context} {target}" if context else target, split)


def mark(sentence: str) -> str:
    """The paper's `mark()`: asterisks around the last space-separated word."""
    words = sentence.split(" ")
    words[-1] = f"*{words[-1]}*"
    return " ".join(words)


def read_stimuli(path) -> List[Stimulus]:
    """Every stimulus of a `.stims` file (with its sidecar splits) or of the paper's TSV, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ParcError(f"stimuli file {path} does not exist: build one with python -m parc.stimuli out={path}")
    if path.suffix == ".tsv":
        return _read_tsv(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not any(line.strip() for line in lines):
        raise ParcError(f"stimuli file {path} is empty: build one with python -m parc.stimuli out={path}")
    sidecar = path.with_suffix(".tsv")
    splits = _sidecar_splits(sidecar, len(lines)) if sidecar.is_file() and sidecar != path else None
    stimuli = [
        parse_marked(line, f"{path} line {i + 1}", i, splits[i] if splits else UNSPLIT) for i, line in enumerate(lines)
    ]
    if splits is not None:
        sentences = _read_table(sidecar)[SENTENCE_COLUMN].tolist()
        for stimulus, sentence in zip(stimuli, sentences):
            if stimulus.sentence != unescape(sentence):
                raise ParcError(
                    f"{sidecar} row {stimulus.id + 1} ({sentence[:60]!r}) is not {path} line "
                    f"{stimulus.id + 1}: rebuild both with python -m parc.stimuli, or delete {sidecar}"
                )
    return stimuli


def _read_table(path: Path):
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ParcError(
            f"cannot read {path} as the paper's TSV ({' '.join(str(exc).split())[:120]}): "
            f"it needs a header with columns {SPLIT_COLUMN} and {SENTENCE_COLUMN}"
        ) from None
    if SENTENCE_COLUMN not in table.columns:
        raise ParcError(
            f"{path} has no {SENTENCE_COLUMN!r} column (columns: {', '.join(table.columns)}): "
            f"the paper's TSV has columns {SPLIT_COLUMN} and {SENTENCE_COLUMN}"
        )
    return table


def _sidecar_splits(sidecar: Path, lines: int) -> List[str]:
    table = _read_table(sidecar)
    if SPLIT_COLUMN not in table.columns or len(table) != lines:
        raise ParcError(
            f"{sidecar} does not give the split of each of the {lines} stimuli (it has "
            f"{len(table)} rows{'' if SPLIT_COLUMN in table.columns else ' and no Set column'}): "
            "rebuild both with python -m parc.stimuli, or delete it"
        )
    return table[SPLIT_COLUMN].tolist()


def _read_tsv(path: Path) -> List[Stimulus]:
    table = _read_table(path)
    if table.empty:
        raise ParcError(f"stimuli file {path} is empty: build one with python -m parc.stimuli")
    splits = table[SPLIT_COLUMN].tolist() if SPLIT_COLUMN in table.columns else [UNSPLIT] * len(table)
    return [
        parse_marked(mark(sentence), f"{path} row {i + 1}", i, split)
        for i, (sentence, split) in enumerate(zip(table[SENTENCE_COLUMN], splits))
    ]


ORIGINS_SUFFIX = ".origins.json"


def origins_path(path) -> Path:
    return Path(path).with_suffix(ORIGINS_SUFFIX)


def read_origins(path) -> Optional[dict]:
    """The origins record of the set at `path` (see the module docstring), checked against the set; or None."""
    import json

    from parc.store.fileio import sha256_file

    sidecar = origins_path(path)
    if not sidecar.is_file():
        return None
    record = json.loads(sidecar.read_text())
    if record.get("stims_sha256") != sha256_file(path):
        raise ParcError(
            f"{sidecar} describes another version of {path}: rebuild the set with python -m "
            f"parc.stimuli, or delete {sidecar}"
        )
    return record


def write_stimuli(path, stimuli: Sequence[Stimulus], origins: Optional[dict] = None) -> List[Path]:
    """Write `path` (.stims, as the paper's all_stims.stims) and its sidecar `.tsv`, each atomically, and
    with `origins` (stream, documents per stimulus, rows per document) the `.origins.json` record."""
    import pandas as pd

    from parc.store.fileio import atomic_write, atomic_write_json, sha256_file

    path = Path(path)
    if path.suffix != ".stims":
        raise ParcError(f"out={path}: the stimuli file must end in .stims (its splits go beside it in .tsv)")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"{s.context} *{s.target}*" if s.context else f"*{s.target}*" for s in stimuli)
    table = pd.DataFrame({SPLIT_COLUMN: [s.split for s in stimuli], SENTENCE_COLUMN: [s.sentence for s in stimuli]})
    sidecar = path.with_suffix(".tsv")
    atomic_write(sidecar, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
    atomic_write(path, lambda tmp: tmp.write_text(lines, encoding="utf-8"))  # no final newline, as the paper's
    if origins is None:
        origins_path(path).unlink(missing_ok=True)  # an old record would describe other stimuli
        return [path, sidecar]
    if len(origins["documents"]) != len(stimuli):
        raise ValueError("origins: one list of documents per stimulus")
    atomic_write_json(origins_path(path), {"stims_sha256": sha256_file(path), **origins})
    return [path, sidecar, origins_path(path)]
