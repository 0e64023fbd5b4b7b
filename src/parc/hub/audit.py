"""Audit a published checkpoint suite: is every revision there, complete, byte-correct, distinct, and is
`main` the final one? What Pythia's own branches got wrong (missing branches, 86 of 154 pythia-2.8b
branches byte-identical to the final model) and Stanford's Mistral runs too (`main` on the wrong step).

`audit(repo)` checks, per checkpoint revision (branches that follow the repo's template, sorted by step):
the manifest's size and sha256 of every listed file against the files on the branch (sha256 from the
Hub's LFS metadata where it has one, else from the downloaded file), the manifest's step against the
branch name, revisions whose weights are identical (by weight hash: any repo, manifest or not), scheduled
steps without a revision, and `main` against the final step. With a local run (`local=<output_dir>`)
it also compares each revision with the local checkpoint it came from. It only reads; `repair` re-pushes
what is wrong from the local checkpoints through the run's journal (so the commit budget applies), and
refuses repositories Parc did not write (no manifests: Pythia's, for instance).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

from parc.errors import ParcError
from parc.hub.reader import revisions_by_step
from parc.hub.repo import HubRepo, survey
from parc.store.checkpoint import MANIFEST, complete_checkpoints, read_manifest, step_of
from parc.store.fileio import sha256_file

MAIN_BRANCH = "main"

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def is_weights(path: str) -> bool:
    return "/" not in path and path.endswith(WEIGHT_SUFFIXES) and not path.startswith("training_args")


def revision_files(repo: HubRepo, revision: str) -> dict:
    """One revision read at one commit: {"commit", "files": path -> {"size", "sha256"}, "manifest"}."""
    listed = repo.files(revision)
    files = {}
    for rel, meta in listed.files.items():
        sha = meta.sha256
        if sha is None and rel != ".gitattributes":  # a regular (non-LFS) file: read it
            local = repo.download_file(listed.commit, rel)
            sha = sha256_file(local) if local is not None else None
        files[rel] = {"size": meta.size, "sha256": sha}
    manifest = None
    if MANIFEST in files:
        try:
            manifest = repo.read_json(listed.commit, MANIFEST)
            manifest["files"].items()
        except (ValueError, KeyError, TypeError, AttributeError):
            manifest = {"invalid": True}
    return {"commit": listed.commit, "files": files, "manifest": manifest}


def weights_hash(files: Dict[str, dict]) -> Optional[str]:
    """One hash of a revision's weight files (their names and sha256): equal hashes = identical weights."""
    listed = sorted((path, meta["sha256"]) for path, meta in files.items() if is_weights(path))
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest() if listed else None


def problems_of(name: str, step: Optional[int], seen: dict) -> List[str]:
    """What is wrong with one revision of a Parc repo, judged by its own manifest."""
    manifest = seen["manifest"]
    if manifest is None:
        return [f"no {MANIFEST} (incomplete)"]
    if manifest.get("invalid"):
        return [f"{MANIFEST} is not a valid manifest"]
    found = []
    if step is not None and manifest.get("step") != step:
        found.append(f"its manifest is of step {manifest.get('step')}")
    for path, meta in sorted(manifest["files"].items()):
        remote = seen["files"].get(path)
        if remote is None:
            found.append(f"{path} is missing")
        elif remote["size"] != meta["size"]:
            found.append(f"{path} has {remote['size']} bytes, the manifest says {meta['size']}")
        elif remote["sha256"] != meta["sha256"]:
            found.append(f"{path} does not match its sha256")
    return found


def compare_local(output_dir: Path, template, seen_by_step: Dict[int, dict]) -> Dict[int, str]:
    """step -> how the published revision differs from the local scheduled checkpoint (absent: it matches)."""
    differences = {}
    for path in complete_checkpoints(output_dir):
        local = read_manifest(path)
        if not local.get("scheduled", True):
            continue
        step = step_of(path)
        seen = seen_by_step.get(step)
        if seen is None:
            differences[step] = f"not on the Hub ({template.name(step)} is missing)"
            continue
        wrong = [
            rel
            for rel, meta in local["files"].items()
            if rel in seen["files"] and seen["files"][rel]["sha256"] != meta["sha256"]
        ]
        absent = [rel for rel in local["files"] if is_weights(rel) and rel not in seen["files"]]
        if wrong or absent:
            differences[step] = f"differs from local {path.name} ({(wrong + absent)[0]})"
    return differences


def audit(repo: HubRepo, local: Optional[Path] = None) -> dict:
    branches = repo.branches()
    named = revisions_by_step(repo, branches)
    names = [name for _, name in named] + ([MAIN_BRANCH] if MAIN_BRANCH in branches else [])
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = dict(zip(names, pool.map(lambda n: revision_files(repo, n), names)))
    by_parc = any(seen[name]["manifest"] is not None for name in names)
    rows, groups = [], {}
    for step, name in named:
        digest = weights_hash(seen[name]["files"])
        groups.setdefault(digest, []).append(step)
        rows.append(
            {
                "step": step,
                "revision": name,
                "weights": digest,
                "problems": problems_of(name, step, seen[name]) if by_parc else [],
            }
        )
    duplicates = [steps for digest, steps in groups.items() if digest is not None and len(steps) > 1]
    final = named[-1] if named else None
    main = seen.get(MAIN_BRANCH)
    main_weights = weights_hash(main["files"]) if main else None
    main_equals = [row["step"] for row in rows if main_weights is not None and row["weights"] == main_weights]
    main_step = (main["manifest"] or {}).get("step") if main and by_parc else None
    if main_weights is None:
        main_state = "main holds no weights"
    elif final is not None and final[0] in main_equals and (main_step in (None, final[0])):
        main_state = "ok"
    else:
        held = main_step if main_step is not None else (main_equals[0] if main_equals else None)
        main_state = (
            f"main holds step {held}, not the final step {final[0] if final else '?'}"
            if held is not None
            else "main's weights are those of no checkpoint revision"
        )
    report = {
        "repo_id": repo.repo_id,
        "written_by_parc": by_parc,
        "branch_template": repo.template.template,
        "branches": sorted(branches),
        "revisions": rows,
        "duplicates": duplicates,
        "main": main_state,
        "main_step": main_step if main_step is not None else (main_equals[-1] if main_equals else None),
        "final_step": final[0] if final else None,
        "missing": None,
        "local": {},
    }
    if by_parc:
        report["missing"] = survey(repo)["missing"]
    if local is not None:
        by_step = {step: seen[name] for step, name in named}
        report["local"] = {str(k): v for k, v in compare_local(Path(local), repo.template, by_step).items()}
    report["ok"] = is_clean(report)
    return report


def is_clean(report: dict) -> bool:
    return (
        not any(row["problems"] for row in report["revisions"])
        and not report["duplicates"]
        and report["main"] == "ok"
        and not report["missing"]
        and not report["local"]
    )


def to_repair(report: dict) -> List[int]:
    """The steps whose revision must be pushed again: wrong by its manifest (a duplicate of another step
    carries that step's manifest, or fails its own sha256), missing, or unlike the local checkpoint."""
    steps = {row["step"] for row in report["revisions"] if row["problems"]}
    steps |= set(report["missing"] or []) | {int(s) for s in report["local"]}
    return sorted(steps)


def repair(report: dict, output_dir: Path) -> List[str]:
    """Re-push, from the local checkpoints, every revision the audit found wrong (and `main` when it is);
    through the run's journal, so the commit budget and the 429 handling apply. Returns what was queued."""
    from parc.hub.publisher import Publisher

    if not report["written_by_parc"]:
        raise ParcError(
            f"{report['repo_id']} was not written by Parc (no {MANIFEST} on any revision): the audit "
            "is read-only there; repair=true only re-pushes Parc's own revisions"
        )
    publisher = Publisher.from_journal(Path(output_dir))
    if publisher.repo_id != report["repo_id"]:
        raise ParcError(
            f"{output_dir} publishes to {publisher.repo_id}, not {report['repo_id']}: give the "
            "output_dir of the run that wrote this repo"
        )
    local = {step_of(p) for p in complete_checkpoints(Path(output_dir))}
    steps = to_repair(report)
    unavailable = [s for s in steps if s not in local]
    if unavailable:
        raise ParcError(
            f"cannot repair step(s) {', '.join(map(str, unavailable))}: no complete local checkpoint "
            f"in {output_dir}; they would need the run again"
        )
    queued = [publisher.requeue(step) for step in steps]
    if report["main"] != "ok" and report["final_step"] is not None and report["final_step"] in local:
        queued.append(publisher.requeue(report["final_step"], main=True))
    if queued:
        publisher.start()
        publisher.close()
    return queued


def render(report: dict) -> str:
    rows = report["revisions"]
    origin = "written by Parc" if report["written_by_parc"] else f"not written by Parc (no {MANIFEST}): read-only"
    lines = [
        f"{report['repo_id']}: {len(rows)} revisions ({report['branch_template']}), {origin}",
        f"{'step':>8}  {'revision':<22} {'weights':<12} status",
    ]
    for row in rows:
        status = "; ".join(row["problems"]) or "ok"
        lines.append(f"{row['step']:>8}  {row['revision']:<22} {(row['weights'] or '-')[:12]:<12} {status}")
    for group in report["duplicates"]:
        lines.append(f"duplicated: steps {', '.join(map(str, group))} have identical weights")
    lines.append(f"main: {report['main']}")
    if report["missing"] is not None:
        lines.append(f"missing: {', '.join(map(str, report['missing'])) or 'none'}")
    for step, difference in sorted(report["local"].items(), key=lambda item: int(item[0])):
        lines.append(f"local step {step}: {difference}")
    if "diffs" in report:
        from parc.hub.weightdiff import render as render_diffs

        lines += ["weight diffs (diffs=true):", render_diffs({"revisions": report["diffs"]})]
    lines.append("audit: clean" if report["ok"] else "audit: PROBLEMS FOUND")
    return "\n".join(lines)


def grid_table(reports: List[dict]) -> str:
    """One line per run of a grid."""
    lines = [f"{'run':<28} {'repo':<40} {'revs':>5} {'bad':>4} {'miss':>5} {'dup':>4} {'local':>5}  main"]
    for report in reports:
        if "error" in report:
            lines.append(f"{report['run']:<28} {report.get('repo_id', '-'):<40} {report['error']}")
            continue
        bad = sum(1 for row in report["revisions"] if row["problems"])
        lines.append(
            f"{report['run']:<28} {report['repo_id']:<40} {len(report['revisions']):>5} {bad:>4} "
            f"{len(report['missing'] or []):>5} {sum(len(g) for g in report['duplicates']):>4} "
            f"{len(report['local']):>5}  {report['main']}"
        )
    clean = sum(1 for r in reports if r.get("ok"))
    lines.append(f"{clean} of {len(reports)} runs clean")
    return "\n".join(lines)
