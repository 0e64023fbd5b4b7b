"""One grammar for every command, read from a declarative spec: `parc <command> [subcommand] [path ...] key=value ...`.

A face declares a `Command`: its own keys (`Key`: name, type, default or required, one line of help), its
positional paths (`Paths`), its subcommands, whether every other `key=value` is a Hydra override of the config it
composes (`overrides=True`; otherwise an unknown key is refused), and the old forms it still reads for one release
(`deprecated`: an argparse flag `--size-only` or an old key `phases.vectors` -> the key now used), each with one
notice on stderr. `Command.parse(argv)` returns a `Parsed` of typed values; a mistake is one ParcError line naming
the key and an example fix; `--help` / `-h` anywhere prints the usage (the face's docstring and its keys), exit 0.

Values: `true|false` for booleans; lists are comma-separated (`a,b,c`; `[a,b]` tolerated); integer lists also take
inclusive ranges (`seeds=0-2,5` -> 0, 1, 2, 5); an optional key given as `key=` or `key=null` keeps its default
(`steps=all` too: every checkpoint).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from parc.errors import EXIT_DONE, ParcError

INTS = "ints"  # comma-separated integers and inclusive ranges: "0-2,5" -> [0, 1, 2, 5]
STRS = "strs"  # comma-separated strings: "pythia,mamba" -> ["pythia", "mamba"]
REQUIRED = "<required>"  # Key.default of a key that must be given
OWN_KEY = re.compile(r"[A-Za-z_][\w.]*$")  # a command's own keys (and old key names it still reads)
OVERRIDE_KEY = re.compile(r"(\+\+|\+|~)?[A-Za-z_][\w.@/-]*$")  # Hydra's override keys (+new, ++force, ~delete)
RANGE = re.compile(r"(\d+)-(\d+)$")
NULL = ("", "null", "none")
TYPE_WORDS = {str: "TEXT", int: "N", float: "X", bool: "true|false", Path: "PATH", INTS: "N,N-M", STRS: "A,B"}


def parse_strs(name: str, text: str) -> List[str]:
    """`a,b,c` (or `[a,b,c]`) -> ["a", "b", "c"]; empty items dropped."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_ints(name: str, text: str, example: str = "0-2,5") -> List[int]:
    """`0,1,2`, `0-5` or `0-2,5` -> integers, in the order given (ranges inclusive, ascending); at least one."""
    values: List[int] = []
    for item in parse_strs(name, text):
        span = RANGE.match(item)
        if span:
            low, high = int(span.group(1)), int(span.group(2))
            if low > high:
                raise ParcError(
                    f"{name}={text}: the range {item} runs backwards; write {high}-{low} "
                    f"(ranges are inclusive, low-high)"
                )
            values += range(low, high + 1)
            continue
        try:
            values.append(int(item))
        except ValueError:
            raise ParcError(f"{name}={text!r} must be integers or ranges, e.g. {name}={example}") from None
    if not values:
        raise ParcError(f"{name}= is empty: give integers or ranges, e.g. {name}={example}")
    return values


def convert(key: "Key", text: str) -> Any:
    """The typed value of `key=text`, or a one-line error naming the key and a value that would do."""
    name, kind = key.name, key.kind
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ParcError(f"{name}={text!r}: use {name}=true or {name}=false")
        return text.lower() == "true"
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            word = "an integer" if kind is int else "a number"
            known = key.default if isinstance(key.default, (int, float)) and not isinstance(key.default, bool) else None
            example = key.example or (known if known is not None else ("8" if kind is int else "0.5"))
            raise ParcError(f"{name}={text!r} is not {word}: e.g. {name}={example}") from None
    elif kind == INTS:
        value = parse_ints(name, text, key.example or "0-2,5")
    elif kind == STRS:
        value = parse_strs(name, text)
        if not value:
            raise ParcError(f"{name}= is empty: give comma-separated values, e.g. {name}={key.example or 'a,b'}")
    else:
        value = Path(text) if kind is Path else text
    wrong = [v for v in (value if isinstance(value, list) else [value]) if key.choices and str(v) not in key.choices]
    if wrong:
        raise ParcError(f"{name}={text!r}: {wrong[0]} is not one of {', '.join(key.choices)}")
    return value


@dataclass(frozen=True)
class Key:
    """One `name=value` argument of a command: its type (str, int, float, bool, Path, INTS, STRS), its default
    (REQUIRED: must be given), the words it may take (`choices`), one line of help and an example value."""

    name: str
    kind: Any = str
    default: Any = None
    help: str = ""
    choices: Tuple[str, ...] = ()
    example: str = ""

    def usage(self) -> str:
        value = "|".join(self.choices) if self.choices and self.kind is str else TYPE_WORDS.get(self.kind, "TEXT")
        default = (
            "required"
            if self.default is REQUIRED
            else ("" if self.default in (None, [], "") else f"default {format_value(self.default)}")
        )
        tail = "; ".join(part for part in (self.help, default) if part)
        return f"  {self.name}={value}".ljust(28) + (f" {tail}" if tail else "")


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class Paths:
    """The positional paths a command takes (`name` in its usage), at least `least`, at most `most` (None: any)."""

    name: str
    least: int = 1
    most: Optional[int] = 1
    kind: Any = Path

    def usage(self) -> str:
        shown = self.name if self.name.startswith("<") else f"<{self.name}>"
        return shown + ("..." if self.most != 1 and not self.name.startswith("<") else "")


@dataclass(frozen=True)
class Parsed:
    """What a command line said: the subcommand ("" if none), typed own values, positional paths, and the
    Hydra overrides left for compose (commands with overrides=True). `parsed.json` reads a value."""

    command: str
    subcommand: str
    values: Dict[str, Any]
    paths: List[Any]
    overrides: List[str]

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{self.__dict__.get('command')} has no key {name!r}")


@dataclass(frozen=True)
class Command:
    """A command's grammar. `name` as in messages ("parc.verify"); `doc` the face's docstring (its usage);
    `example` a whole valid command line for error messages; `subcommands` each a Command (name "" for the form
    without a subcommand word, as `parc.plot <runs>`)."""

    name: str
    doc: str = ""
    keys: Tuple[Key, ...] = ()
    paths: Optional[Paths] = None
    overrides: bool = False
    deprecated: Dict[str, str] = field(default_factory=dict)
    subcommands: Tuple["Command", ...] = ()
    example: str = ""

    def parse(self, argv: Optional[Sequence[str]] = None) -> Parsed:
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--help" in argv or "-h" in argv:
            print(self.usage())
            sys.exit(EXIT_DONE)
        if not self.subcommands:
            return self.read(argv, self.name, "")
        named = {sub.name: replace(sub, example=sub.example or self.example_line()) for sub in self.subcommands}
        if argv and argv[0] in named and argv[0]:
            word = argv.pop(0)
            return named[word].read(argv, self.name, word)
        if "" in named:
            return named[""].read(argv, self.name, "")
        words = ", ".join(sub.name for sub in self.subcommands)
        given = f"{argv[0]!r} is not a subcommand: " if argv else ""
        raise ParcError(f"{given}give a subcommand first, one of {words} (e.g. {self.example_line()})")

    def example_line(self) -> str:
        return self.example or f"python -m {self.name} --help"

    def key(self, name: str) -> Optional[Key]:
        return next((key for key in self.keys if key.name == name), None)

    def takes(self) -> str:
        return ", ".join(f"{key.name}=" for key in self.keys) or "no key=value arguments"

    def read(self, argv: List[str], command: str, subcommand: str) -> Parsed:
        """Tokens -> Parsed, for a command without subcommands (or one subcommand's spec)."""
        label = f"{command} {subcommand}".strip()
        given: Dict[str, Any] = {}
        paths: List[Any] = []
        overrides: List[str] = []
        tokens = list(argv)
        while tokens:
            token = tokens.pop(0)
            flag = token.partition("=")[0]
            if token.startswith("--") and flag in self.deprecated:
                self.store(given, *self.old_flag(token, tokens))
                continue
            key, sep, text = token.partition("=")
            if sep and OWN_KEY.match(key) and (key in self.deprecated or self.key(key)):
                if key in self.deprecated:
                    note(f"{key}=", f"{self.deprecated[key]}={text}")
                    key = self.deprecated[key]
                self.store(given, key, text)
            elif self.overrides and OVERRIDE_KEY.match(key) and (sep or token[:1] == "~"):
                overrides.append(token)  # a Hydra override (`~key` deletes one)
            elif sep and OWN_KEY.match(key):
                raise ParcError(
                    f"unknown argument {token!r}: {label} takes {self.takes()} (e.g. {self.example_line()})"
                )
            elif token.startswith("-") and not token[1:2].isdigit():
                raise ParcError(
                    f"unknown option {token!r}: {label} takes key=value arguments, {self.takes()} "
                    f"(e.g. {self.example_line()})"
                )
            elif self.paths is not None and (self.paths.most is None or len(paths) < self.paths.most):
                paths.append(self.paths.kind(token))
            else:
                what = f"more than {self.paths.usage()}" if self.paths else "a path: write key=value"
                raise ParcError(
                    f"unexpected argument {token!r}: {label} does not take {what} (e.g. {self.example_line()})"
                )
        if self.paths is not None and len(paths) < self.paths.least:
            count = f"{self.paths.least} of " if self.paths.least > 1 else ""
            raise ParcError(f"{label} needs {count}{self.paths.usage()} first (e.g. {self.example_line()})")
        return Parsed(command, subcommand, self.complete(given, label), paths, overrides)

    def old_flag(self, token: str, tokens: List[str]) -> Tuple[str, str]:
        """An argparse flag this command still reads: `--json`, `--out X` or `--out=X` -> (key, text)."""
        flag, sep, inline = token.partition("=")
        key = self.key(self.deprecated[flag])
        if key.kind is bool:
            if sep:
                raise ParcError(f"{flag} takes no value: write {key.name}=true")
            text = "true"
        elif sep:
            text = inline
        elif tokens:
            text = tokens.pop(0)
        else:
            raise ParcError(f"{flag} needs a value: write {key.name}=<value> (e.g. {self.example_line()})")
        note(flag, f"{key.name}={text}")
        return key.name, text

    def store(self, given: Dict[str, Any], name: str, text: str) -> None:
        key = self.key(name)
        every = text.strip().lower() == "all" and key.kind == INTS and key.default is None  # steps=all: every one
        if text.strip().lower() in NULL or every:
            if key.default is REQUIRED:
                raise ParcError(f"{name}= is empty: it is required (e.g. {self.example_line()})")
            return  # `key=` / `key=null`: the default
        value = convert(key, text)
        if name in given:
            if not isinstance(value, list):
                raise ParcError(f"{name}= is given twice ({format_value(given[name])} and {text}): give it once")
            value = given[name] + value  # a list key given twice: both lists (the old repeated `--a X --a Y`)
        given[name] = value

    def complete(self, given: Dict[str, Any], label: str) -> Dict[str, Any]:
        missing = [key.name for key in self.keys if key.default is REQUIRED and key.name not in given]
        if missing:
            raise ParcError(f"{missing[0]}= is required for {label} (e.g. {self.example_line()})")
        defaults = {
            key.name: list(key.default) if isinstance(key.default, (list, tuple)) else key.default for key in self.keys
        }
        return {**defaults, **given}

    def usage(self) -> str:
        lines = [self.doc.strip() or f"python -m {self.name}", ""]
        for spec in self.subcommands or (self,):
            heading = f"{self.name} {spec.name}".strip() if self.subcommands else self.name
            paths = f" {spec.paths.usage()}" if spec.paths else ""
            extra = " [config overrides: key=value ...]" if spec.overrides else ""
            lines.append(f"usage: python -m {heading}{paths} [key=value ...]{extra}")
            lines += [key.usage() for key in spec.keys]
            old = [f"{flag} -> {new}=" for flag, new in spec.deprecated.items()]
            if old:
                lines.append(f"  still read, with a notice (the old forms go in the next release): {', '.join(old)}")
        return "\n".join(lines)


def note(old: str, new: str) -> None:
    print(f"note: {old} is deprecated; use {new} (the old form goes in the next release)", file=sys.stderr, flush=True)
