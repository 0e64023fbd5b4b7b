"""hub.branch: the revision-name template, its validation, and a real run publishing Pythia-style `step{N}`
branches to the local Hub server that resumes from them (the newest by step, not by text)."""

from __future__ import annotations

import json
import shutil

import pytest

from parc.errors import ParcError

from conftest import run_cli, run_cli_cases, short_run
from hub_server import hub_server  # noqa: F401  (the fixture)


def test_names_and_steps_round_trip_and_other_branches_are_ignored():
    from parc.hub.branches import BranchTemplate

    pythia = BranchTemplate("step{N}")
    assert [pythia.name(s) for s in (0, 9, 10, 143000)] == ["step0", "step9", "step10", "step143000"]
    names = ["main", "step10", "step9", "step0", "step010", "stepx", "step-1", "step9-old", "checkpoint-3"]
    assert pythia.revisions(names) == {0: "step0", 9: "step9", 10: "step10"}
    suffixed = BranchTemplate("ckpt-{N}-final")
    assert suffixed.step(suffixed.name(42)) == 42 and suffixed.step("ckpt-42") is None


def test_the_template_of_an_unknown_repo_is_guessed_from_its_branches():
    from parc.hub.branches import guess

    assert guess(["main", "step0", "step1000", "step143000", "v1"]).template == "step{N}"
    assert guess(["main", "checkpoint-0", "checkpoint-10"]).template == "checkpoint-{N}"
    assert guess(["main"]).template == "checkpoint-{N}"


BAD_TEMPLATES = [
    ("step", "exactly once"),
    ("step{N}-{N}", "exactly once"),
    ("step {N}", "valid git branch"),
    ("a..{N}", "valid git branch"),
    ("{N}.lock", "valid git branch"),
    (".hidden{N}", "valid git branch"),
    ("step{N}:x", "valid git branch"),
    ("runs/step{N}", "must not contain '/'"),
]


def test_bad_templates_are_refused_in_one_line(tmp_path):
    from parc.config import compose
    from parc.training.runconfig import validate

    for template, problem in BAD_TEMPLATES:
        with pytest.raises(ParcError, match=problem) as caught:
            validate(compose(["experiment=demo", f"hub.branch={template}"]))
        assert "\n" not in str(caught.value) and "step{N}" in str(caught.value)  # names the fix

    # the same refusals from the command line (all cases in one interpreter: their cost is the imports)
    roots = [tmp_path / f"case{i}" for i in range(len(BAD_TEMPLATES))]
    refusals = run_cli_cases(
        "parc.train",
        [
            ["experiment=demo", f"paths.root={root}", f"hub.branch={template}"]
            for root, (template, _) in zip(roots, BAD_TEMPLATES)
        ],
    )
    for (template, problem), refused in zip(BAD_TEMPLATES, refusals):
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), (template, refused.stderr)
        assert refused.stderr.count("\n") == 1 and problem in refused.stderr, (template, refused.stderr)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_a_run_publishes_step_branches_and_resumes_from_the_newest_by_step(hub_server, demo_root, tmp_path):
    out = tmp_path / "run"
    args = [
        *short_run(demo_root, out, steps=10, every=5),
        "hub.repo_id=org/pythia-style",
        "hub.branch=step{N}",
        "hub.retry_initial_s=0.05",
        "hub.max_commits_per_hour=360000",
    ]
    first = run_cli("parc.train", *args, env=hub_server.env())
    assert first.returncode == 0, first.stderr[-3000:]
    repo = hub_server.state.repos["org/pythia-style"]
    assert set(repo.branches) == {"main", "step0", "step5", "step10"}  # local dirs stay checkpoint-N
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-10", "checkpoint-5"]
    for branch, step in [("step0", 0), ("step5", 5), ("step10", 10), ("main", 10)]:
        files = hub_server.state.files("org/pythia-style", branch)
        local = out / f"checkpoint-{step}"
        assert files["model.safetensors"] == (local / "model.safetensors").read_bytes(), branch
        assert json.loads(files["parc_checkpoint.json"])["step"] == step
    assert sorted(
        json.loads(p.read_text())["revision"] for p in (out / "hub_journal").glob("*.json") if p.name != "repo.json"
    ) == ["main", "step0", "step10", "step5"]

    listing = run_cli("parc.revisions", "org/pythia-style", env=hub_server.env())  # template guessed
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert [line.split()[1] for line in listing.stdout.splitlines() if line.split()[0].isdigit()] == [
        "step0",
        "step5",
        "step10",
    ]
    assert "main = step 10" in listing.stdout

    shutil.rmtree(out)  # only the Hub remains: resume=auto must take step10 ("step5" > "step10" as text)
    resumed = run_cli("parc.train", *args, env=hub_server.env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        "resuming from" in resumed.stdout
        and "checkpoint-10" in resumed.stdout
        and "resuming from step10" in resumed.stderr
    )
    assert (out / "checkpoint-10" / "model.safetensors").read_bytes() == hub_server.state.files(
        "org/pythia-style", "step10"
    )["model.safetensors"]
