"""The report of parc.verify: every checkpoint of a run, a grid or one directory checked, as a table or JSON.

`verify_tree(path, check_sha, as_json)` prints the verdicts of parc.store.integrity's `check_tree` and
returns whether any checkpoint is damaged (incomplete ones are listed, not failures).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List

from parc.errors import format_bytes
from parc.store import integrity

STYLE = {integrity.OK: "green", integrity.DAMAGED: "bold red", integrity.INCOMPLETE: "yellow"}


def render(root: Path, results: Dict[str, List[integrity.Verdict]]) -> None:
    from rich.console import Console
    from rich.table import Table

    verdicts = [v for found in results.values() for v in found]
    counts = {status: sum(v.status == status for v in verdicts) for status in STYLE}
    caption = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    table = Table(title=str(root), caption=f"{len(verdicts)} checkpoints in {len(results)} runs: {caption}")
    for name in ("run", "checkpoint", "files", "size", "train state", "checked", "status", "problem"):
        table.add_column(name, justify="right" if name in ("files", "size") else "left", no_wrap=name != "problem")
    for run, found in results.items():
        table.add_section()
        for v in found:
            table.add_row(
                Path(run).name,
                Path(v.path).name,
                str(v.files),
                format_bytes(v.bytes) if v.files else "",
                "yes" if v.train_state else "",
                "size+sha256" if v.sha256_checked else "size",
                f"[{STYLE[v.status]}]{v.status}[/]",
                v.problem or "",
            )
    console = Console()
    console.width = max(console.width, 120)  # piped output: the whole table
    console.print(table)


def verify_tree(path: Path, check_sha: bool, as_json: bool) -> bool:
    """Print the verdicts; True when a checkpoint is damaged."""
    results = integrity.check_tree(path, check_sha=check_sha)
    if as_json:
        rows = {
            run: [{k: v for k, v in asdict(verdict).items() if k != "manifest"} for verdict in found]
            for run, found in results.items()
        }
        print(json.dumps({"root": str(path), "runs": rows}, indent=1))
    else:
        render(path, results)
    return any(v.status == integrity.DAMAGED for found in results.values() for v in found)
