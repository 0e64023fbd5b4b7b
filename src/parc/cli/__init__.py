"""The command grammar every face shares: `parc <command> [subcommand] [path ...] key=value ...`.

Owns how a command line is read (parc.cli.grammar: a declarative spec per command -> typed values, one-line
errors, `--help`, the old forms' deprecation notices), and nothing else: it knows no command, config or model.
Shared bottom: it imports only parc.errors and the standard library, so every layer may use it.
"""

from parc.cli.grammar import INTS, REQUIRED, STRS, Command, Key, Parsed, Paths, parse_ints, parse_strs

__all__ = ["Command", "INTS", "Key", "Parsed", "Paths", "REQUIRED", "STRS", "parse_ints", "parse_strs"]
