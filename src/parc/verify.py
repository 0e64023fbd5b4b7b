"""`python -m parc.verify <output_dir | grid root | checkpoint dir>`: check every checkpoint without training.

    python -m parc.verify runs/parc/pythia-seed0-shard0      # one run: a table of its checkpoints
    python -m parc.verify runs/parc                          # a grid: every run under it
    python -m parc.verify runs/parc --json                   # for scripts
    python -m parc.verify runs/parc --size-only              # sizes only (no sha256: seconds for a grid)

Each file a checkpoint's manifest lists is checked for presence, size and sha256 (parc.integrity).
Exit status: 0 when nothing is damaged, 1 when a checkpoint is damaged (incomplete ones, interrupted
saves that no run would use, are listed but are not failures), 2 for a bad path.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

from parc import integrity
from parc.errors import exit_on_error
from parc.iofaults import format_bytes

EXIT_DAMAGED = 1
STYLE = {integrity.OK: "green", integrity.DAMAGED: "bold red", integrity.INCOMPLETE: "yellow"}


def render(root: Path, results: Dict[str, List[integrity.Verdict]]) -> None:
    from rich.console import Console
    from rich.table import Table

    verdicts = [v for found in results.values() for v in found]
    counts = {status: sum(v.status == status for v in verdicts) for status in STYLE}
    caption = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    table = Table(title=str(root), caption=f"{len(verdicts)} checkpoints in {len(results)} runs: {caption}")
    for name in ("run", "checkpoint", "files", "size", "train state", "checked", "status", "problem"):
        table.add_column(name, justify="right" if name in ("files", "size") else "left",
                         no_wrap=name != "problem")
    for run, found in results.items():
        table.add_section()
        for v in found:
            table.add_row(Path(run).name, Path(v.path).name, str(v.files), format_bytes(v.bytes) if v.files else "",
                          "yes" if v.train_state else "", "size+sha256" if v.sha256_checked else "size",
                          f"[{STYLE[v.status]}]{v.status}[/]", v.problem or "")
    console = Console()
    console.width = max(console.width, 120)  # piped output: the whole table
    console.print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parc.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run's output_dir, a grid root, or one checkpoint-N directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--size-only", action="store_true", help="check sizes only, not sha256")
    return parser


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    results = integrity.check_tree(args.path, check_sha=not args.size_only)
    if args.json:
        rows = {run: [{k: v for k, v in asdict(verdict).items() if k != "manifest"} for verdict in found]
                for run, found in results.items()}
        print(json.dumps({"root": str(args.path), "runs": rows}, indent=1))
    else:
        render(args.path, results)
    if any(v.status == integrity.DAMAGED for found in results.values() for v in found):
        sys.exit(EXIT_DAMAGED)


if __name__ == "__main__":
    main()
