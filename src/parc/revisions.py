"""`python -m parc.revisions <repo_id> [--json] [--branch TEMPLATE]`: a repo's checkpoint revisions sorted by
step (checkpoint-10 after checkpoint-9, step10 after step9), flagging incomplete ones (no valid completion manifest) and missing ones (scheduled,
per the run's own manifest or config, but absent). Endpoint and token: huggingface_hub's usual settings.
"""

from __future__ import annotations

import argparse
import json

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


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.revisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("repo_id", help="org/name")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--branch", default=None, help="branch name template, e.g. 'step{N}' (default: the one "
                        "the repo's numbered branches follow)")
    args = parser.parse_args(argv)

    from parc.branches import BranchTemplate, guess
    from parc.hub import refuse_offline_env
    from parc.hubrepo import REPO_ID, HubRepo, survey

    if not REPO_ID.match(args.repo_id):
        raise ParcError(f"{args.repo_id!r} is not a repo id: give org/name")
    refuse_offline_env()
    if args.branch is not None:
        BranchTemplate(args.branch)  # a bad template fails before any request
    repo = HubRepo(args.repo_id)
    if not repo.exists():
        raise ParcError(f"repository {args.repo_id} not found on the Hub (check the name and HF_TOKEN)")
    repo.template = BranchTemplate(args.branch) if args.branch is not None else guess(repo.branches())
    report = survey(repo)
    print(json.dumps(report) if args.json else render(report))


if __name__ == "__main__":
    main()
