"""Rebuild src/parc/demo_corpus/kjv.jsonl.gz, the King James Bible that experiment=mini_parc trains on beside
the plays (public domain; 66 books, ~820 k words), from Debian's bible-kjv-text (its text ships in the
`bible` program's compressed format, so the program prints it):

    apt-get download bible-kjv bible-kjv-text && for f in bible-kjv*.deb; do dpkg -x "$f" kjv; done
    python scripts/build-kjv-corpus.py kjv

One JSON line per book (id, title, source, text): the book's name, then its chapters, one paragraph each,
verses joined by spaces (verse numbers dropped). Deterministic: the same package gives the same bytes.
"""

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

BOOKS = [
    "Genesis",
    "Exodus",
    "Leviticus",
    "Numbers",
    "Deuteronomy",
    "Joshua",
    "Judges",
    "Ruth",
    "1 Samuel",
    "2 Samuel",
    "1 Kings",
    "2 Kings",
    "1 Chronicles",
    "2 Chronicles",
    "Ezra",
    "Nehemiah",
    "Esther",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Isaiah",
    "Jeremiah",
    "Lamentations",
    "Ezekiel",
    "Daniel",
    "Hosea",
    "Joel",
    "Amos",
    "Obadiah",
    "Jonah",
    "Micah",
    "Nahum",
    "Habakkuk",
    "Zephaniah",
    "Haggai",
    "Zechariah",
    "Malachi",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "2 Corinthians",
    "Galatians",
    "Ephesians",
    "Philippians",
    "Colossians",
    "1 Thessalonians",
    "2 Thessalonians",
    "1 Timothy",
    "2 Timothy",
    "Titus",
    "Philemon",
    "Hebrews",
    "James",
    "1 Peter",
    "2 Peter",
    "1 John",
    "2 John",
    "3 John",
    "Jude",
    "Revelation",
]
VERSE = re.compile(r"^(\S+?)(\d+):(\d+) (.*)$")


def main(root: Path, out: Path) -> None:
    text = subprocess.run(
        [str(root / "usr/bin/bible"), "-f", "-p", str(root / "usr/lib"), "-d", "bible.data", "gen1:1-rev22:21"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    books, order = {}, []
    for line in text.splitlines():
        abbrev, chapter, _verse, words = VERSE.match(line).groups()
        if abbrev not in books:
            books[abbrev] = {}
            order.append(abbrev)
        books[abbrev].setdefault(int(chapter), []).append(words.strip())
    if len(order) != len(BOOKS):
        raise SystemExit(f"expected {len(BOOKS)} books, the program printed {len(order)}")
    # no file name or time in the gzip header: the same package gives the same bytes wherever it is built
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as sink:
        for number, (abbrev, title) in enumerate(zip(order, BOOKS)):
            chapters = "\n\n".join(" ".join(verses) for _, verses in sorted(books[abbrev].items()))
            row = {
                "id": f"kjv-{number:02d}",
                "title": title,
                "source": "King James Version (Debian bible-kjv-text)",
                "text": f"{title.upper()}\n\n{chapters}\n",
            }
            sink.write((json.dumps(row, ensure_ascii=False) + "\n").encode())


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2])
        if len(sys.argv) > 2
        else Path(__file__).resolve().parents[1] / "src/parc/demo_corpus/kjv.jsonl.gz",
    )
