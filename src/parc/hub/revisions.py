"""A repo's checkpoint revisions sorted by step, and the audit of one run or a whole grid (parc.revisions).

`run_revisions(...)` checks the arguments of `python -m parc.revisions`, then surveys a repo (revisions sorted by
step, incomplete and missing ones flagged), audits it (parc.hub.audit) or audits every run of a grid, prints
the table or JSON and returns whether everything is right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError
from parc.hub.reader import open_repo


def render(report: dict) -> str:
    rows = report["revisions"]
    done = sum(row["complete"] for row in rows)
    main = f"main = step {report['main']}" if report["main"] is not None else "main holds no checkpoint"
    lines = [
        f"{report['repo_id']}: {len(rows)} checkpoint revisions, {done} complete; {main}",
        f"{'step':>8}  {'revision':<20} {'status':<11} {'tokens':>12}  train_state",
    ]
    for row in rows:
        status = "complete" if row["complete"] else "INCOMPLETE"
        detail = (
            f"{row['tokens']:>12}  {'yes' if row['train_state'] else 'no'}"
            if row["complete"]
            else f"{'':>12}  ({row['problem']})"
        )
        lines.append(f"{row['step']:>8}  {row['revision']:<20} {status:<11} {detail}")
    if report["missing"] is None:
        lines.append("missing: unknown (no complete revision says what the schedule was)")
    else:
        lines.append(f"missing: {', '.join(map(str, report['missing'])) or 'none'}")
    return "\n".join(lines)


def audit_run(repo_id: str, branch: Optional[str], local: Optional[Path], fix: bool, diffs: bool = False) -> dict:
    from parc.hub.audit import audit, repair

    repo = open_repo(repo_id, branch)
    report = audit(repo, local)
    if fix and not report["ok"]:
        report["repaired"] = repair(report, local)
        report = {**audit(repo, local), "repaired": report["repaired"]}
    if diffs:
        from parc.hub.weightdiff import hub_revisions, weight_diffs

        found = weight_diffs(hub_revisions(repo))
        report["diffs"] = found["revisions"]
        report["diff_flags"] = found["flagged"]
        report["ok"] = report["ok"] and not found["flagged"]
    return report


def audit_grid(root: Path, fix: bool, diffs: bool = False) -> List[dict]:
    """Every run under a grid root that has a hub journal (hence a repo), audited with its local checkpoints."""
    from parc.hub.journal import JOURNAL_DIR, Journal

    reports = []
    runs = sorted(p.parent for p in root.glob(f"*/{JOURNAL_DIR}") if (p / "repo.json").is_file())
    if not runs:
        raise ParcError(
            f"no run under {root} publishes to the Hub (no */{JOURNAL_DIR}/repo.json): give the "
            "grid's run root, e.g. runs/parc"
        )
    for run in runs:
        target = Journal(run).target()
        try:
            report = audit_run(target["repo_id"], target.get("branch"), run, fix, diffs)
        except ParcError as exc:
            report = {"repo_id": target["repo_id"], "error": str(exc)}
        reports.append({**report, "run": run.name})
    return reports


def run_revisions(
    repo_id: Optional[str],
    branch: Optional[str],
    audit: bool,
    local: Optional[Path],
    repair: bool,
    grid: Optional[Path],
    as_json: bool,
    diffs: bool = False,
) -> bool:
    """The whole command after parsing; returns False when the audit finds something wrong."""
    from parc.hub.publisher import refuse_offline_env

    if (repo_id is None) == (grid is None):
        raise ParcError("give either a repo id (org/name) or grid=<run root>")
    if (local or repair or grid or diffs) and not audit:
        raise ParcError("local=, repair=, grid= and diffs= go with audit=true: add audit=true")
    if repair and local is None and grid is None:
        raise ParcError("repair=true re-pushes from the local checkpoints: add local=<output_dir> of the run")
    if local is not None and not local.is_dir():
        raise ParcError(f"local={local} is not a directory: give the run's output_dir")
    refuse_offline_env()
    if grid is not None:
        from parc.hub.audit import grid_table

        reports = audit_grid(grid, repair, diffs)
        print(json.dumps(reports) if as_json else grid_table(reports))
        ok = all(r.get("ok") for r in reports)
    elif audit:
        from parc.hub.audit import render as render_audit

        report = audit_run(repo_id, branch, local, repair, diffs)
        print(json.dumps(report) if as_json else render_audit(report))
        ok = report["ok"]
    else:
        from parc.hub.repo import survey

        report = survey(open_repo(repo_id, branch))
        print(json.dumps(report) if as_json else render(report))
        ok = True
    return ok
