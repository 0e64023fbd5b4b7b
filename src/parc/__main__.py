"""`parc <command> [arguments]`: one entry to every command; `parc <command> ...` is `python -m parc.<command> ...`.

    parc --help                  # (also `parc`, `parc help`) every command with its one-line purpose
    parc train experiment=demo   # = python -m parc.train experiment=demo (same argv, output and exit code)
    parc help verify             # = parc verify --help

Commands: the modules directly under parc/ and packages with a __main__ (study); purposes are read with `ast`.
"""

from __future__ import annotations

import ast
import difflib
import re
import runpy
import sys
import textwrap
from pathlib import Path

from parc.errors import ParcError, exit_on_error

PACKAGE = Path(__file__).resolve().parent


def commands() -> dict[str, Path]:
    """Each command's name -> its module file (a face, or a package's __main__.py); never imported here."""
    faces = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "config", "errors")}
    return dict(sorted({**faces, **{p.parent.name: p for p in PACKAGE.glob("*/__main__.py")}}.items()))


def purpose(path: Path) -> str:
    """The first sentence of a module's docstring after its `python -m ...` usage span, on one short line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraphs = [" ".join(paragraph.split()) for paragraph in doc.split("\n\n")] + [""]
    text = re.sub(r"^`python -m [^`]*`[:.]?", "", paragraphs[0]).strip() or paragraphs[1]  # usage alone: the next
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
    return textwrap.shorten(sentence[:1].upper() + sentence[1:], width=100, placeholder=" ...")


def usage() -> str:
    rows = [f"  {name:<10} {purpose(path)}" for name, path in commands().items()]
    return "\n".join(
        [
            "usage: parc <command> [arguments]   (= python -m parc.<command> [arguments])\n\ncommands:",
            *rows,
            "\nparc <command> --help shows a command's own arguments.",
        ]
    )


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv == ["help"]:
        return print(usage())
    name, rest = (argv[1], ["--help"]) if argv[0] == "help" else (argv[0], argv[1:])
    if name not in commands():
        closest = difflib.get_close_matches(name, commands(), n=1, cutoff=0.0)
        raise ParcError(f"unknown command {name!r}: did you mean {closest[0]!r}? (parc --help lists every command)")
    sys.argv = [sys.argv[0], *rest]  # run_module sets argv[0] to the module's file, as `python -m` does
    runpy.run_module(f"parc.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
