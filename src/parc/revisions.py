"""`python -m parc.revisions <repo_id> [--json] [--branch TEMPLATE]`: a repo's checkpoint revisions sorted by
step (checkpoint-10 after checkpoint-9, step10 after step9), flagging incomplete ones (no valid completion manifest) and missing ones (scheduled,
per the run's own manifest or config, but absent). Endpoint and token: huggingface_hub's usual settings.

`--audit [--local <output_dir>] [--repair]`, or `--audit --grid <run root>` for every run of a grid:
see `parc.audit`. Exit 1 when the audit finds something wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError, exit_on_error


def render(report: dict) -> str:
    rows = report["revisions"]
    done = sum(row["complete"] for row in rows)
    main = f"main = step {report['main']}" if report["main"] is not None else "main holds no checkpoint"
    lines = [f"{report['repo_id']}: {len(rows)} checkpoint revisions, {done} complete; {main}",
             f"{'step':>8}  {'revision':<20} {'status':<11} {'tokens':>12}  train_state"]
    for row in rows:
        status = "complete" if row["complete"] else "INCOMPLETE"
        detail = (f"{row['tokens']:>12}  {'yes' if row['train_state'] else 'no'}" if row["complete"]
                  else f"{'':>12}  ({row['problem']})")
        lines.append(f"{row['step']:>8}  {row['revision']:<20} {status:<11} {detail}")
    if report["missing"] is None:
        lines.append("missing: unknown (no complete revision says what the schedule was)")
    else:
        lines.append(f"missing: {', '.join(map(str, report['missing'])) or 'none'}")
    return "\n".join(lines)


def open_repo(repo_id: str, branch: Optional[str]):
    """The repo, its branch template given or guessed from its branches; a missing repo is a one-line error."""
    from parc.branches import BranchTemplate, guess
    from parc.hubrepo import REPO_ID, HubRepo

    if not REPO_ID.match(repo_id):
        raise ParcError(f"{repo_id!r} is not a repo id: give org/name")
    template = BranchTemplate(branch) if branch is not None else None  # a bad template fails before any request
    repo = HubRepo(repo_id)
    if not repo.exists():
        raise ParcError(f"repository {repo_id} not found on the Hub (check the name and HF_TOKEN)")
    repo.template = template or guess(repo.branches())
    return repo


def audit_run(repo_id: str, branch: Optional[str], local: Optional[Path], fix: bool) -> dict:
    from parc.audit import audit, repair

    repo = open_repo(repo_id, branch)
    report = audit(repo, local)
    if fix and not report["ok"]:
        report["repaired"] = repair(report, local)
        report = {**audit(repo, local), "repaired": report["repaired"]}
    return report


def audit_grid(root: Path, fix: bool) -> List[dict]:
    """Every run under a grid root that has a hub journal (hence a repo), audited with its local checkpoints."""
    from parc.hub import JOURNAL_DIR, Journal

    reports = []
    runs = sorted(p.parent for p in root.glob(f"*/{JOURNAL_DIR}") if (p / "repo.json").is_file())
    if not runs:
        raise ParcError(f"no run under {root} publishes to the Hub (no */{JOURNAL_DIR}/repo.json): give the "
                        "grid's run root, e.g. runs/parc")
    for run in runs:
        target = Journal(run).target()
        try:
            report = audit_run(target["repo_id"], target.get("branch"), run, fix)
        except ParcError as exc:
            report = {"repo_id": target["repo_id"], "error": str(exc)}
        reports.append({**report, "run": run.name})
    return reports


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.revisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("repo_id", nargs="?", help="org/name (not with --grid)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--branch", default=None, help="branch name template, e.g. 'step{N}' (default: the one "
                        "the repo's numbered branches follow)")
    parser.add_argument("--audit", action="store_true", help="check every revision's files against its manifest "
                        "(sha256), duplicates, main vs the final step; exit 1 when something is wrong")
    parser.add_argument("--local", type=Path, default=None, help="the run's output_dir: compare with its checkpoints")
    parser.add_argument("--repair", action="store_true", help="re-push what the audit finds wrong (needs --local)")
    parser.add_argument("--grid", type=Path, default=None, help="audit every run under this grid root (its "
                        "output_dirs name their repos)")
    args = parser.parse_args(argv)

    from parc.hub import refuse_offline_env

    if (args.repo_id is None) == (args.grid is None):
        raise ParcError("give either a repo id (org/name) or --grid <run root>")
    if (args.local or args.repair or args.grid) and not args.audit:
        raise ParcError("--local, --repair and --grid go with --audit: add --audit")
    if args.repair and args.local is None and args.grid is None:
        raise ParcError("--repair re-pushes from the local checkpoints: add --local <output_dir> of the run")
    if args.local is not None and not args.local.is_dir():
        raise ParcError(f"--local {args.local} is not a directory: give the run's output_dir")
    refuse_offline_env()
    if args.grid is not None:
        from parc.audit import grid_table

        reports = audit_grid(args.grid, args.repair)
        print(json.dumps(reports) if args.json else grid_table(reports))
        ok = all(r.get("ok") for r in reports)
    elif args.audit:
        from parc.audit import render as render_audit

        report = audit_run(args.repo_id, args.branch, args.local, args.repair)
        print(json.dumps(report) if args.json else render_audit(report))
        ok = report["ok"]
    else:
        from parc.hubrepo import survey

        report = survey(open_repo(args.repo_id, args.branch))
        print(json.dumps(report) if args.json else render(report))
        ok = True
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
