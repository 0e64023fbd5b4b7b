"""`python -m parc.revisions <repo> --audit`: planted faults in a Parc repo on the local Hub server are each
found and repaired from the local checkpoints; a Pythia-style repo (step{N} branches, no manifests) is
audited read-only."""

from __future__ import annotations

import json

import pytest
from test_hub import PUBLISH, REPO, cli, client, copy_run, hub_files, local_files, template  # noqa: F401

from parc.store.checkpoint import STATE_DIR

from hub_server import Repo, hub_server  # noqa: F401  (the fixture)


def audited(hub, *args):
    done = cli(hub, "parc.revisions", *args, "audit=true", "json=true")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


@pytest.mark.slow
def test_planted_faults_are_each_found_and_repaired(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    published = client(hub_server, PUBLISH, tmp_path, out, steps=[0, 5, 9, 10], final=10)
    assert published.returncode == 0, published.stderr[-3000:]
    code, report = audited(hub_server, REPO, f"local={out}")
    assert code == 0 and report["ok"] and report["main"] == "ok", report

    state, repo = hub_server.state, hub_server.state.repos[REPO]
    original_0 = repo.branches["checkpoint-0"]
    del repo.branches["checkpoint-5"]  # a missing branch
    truncated = dict(repo.commits[original_0])
    optimizer = f"{STATE_DIR}/optimizer.pt"
    truncated[optimizer] = truncated[optimizer][:100]  # a truncated file
    state.commit(REPO, "checkpoint-0", truncated, "truncated upload")
    repo.branches["checkpoint-9"] = repo.branches["checkpoint-10"]  # two identical branches
    repo.branches["main"] = original_0  # main on an older step

    code, report = audited(hub_server, REPO, f"local={out}")
    assert code == 1 and not report["ok"]
    problems = {row["step"]: row["problems"] for row in report["revisions"]}
    assert sorted(problems) == [0, 9, 10]
    size = len((out / "checkpoint-0" / optimizer).read_bytes())
    assert problems[0] == [f"{optimizer} has 100 bytes, the manifest says {size}"]
    assert problems[9] == ["its manifest is of step 10"] and problems[10] == []
    assert report["duplicates"] == [[9, 10]]
    assert report["missing"] == [5]
    assert report["main"] == "main holds step 0, not the final step 10"
    assert sorted(report["local"]) == ["0", "5"]  # 9 was never scheduled, so it has no local counterpart
    assert "not on the Hub" in report["local"]["5"] and optimizer in report["local"]["0"]

    table = cli(hub_server, "parc.revisions", "audit=true", f"grid={tmp_path}")
    assert table.returncode == 1 and "0 of 1 runs clean" in table.stdout and "main holds step 0" in table.stdout

    repaired = cli(hub_server, "parc.revisions", "audit=true", f"grid={tmp_path}", "repair=true")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
    assert "1 of 1 runs clean" in repaired.stdout
    for revision, step in [
        ("checkpoint-0", 0),
        ("checkpoint-5", 5),
        ("checkpoint-9", 9),
        ("checkpoint-10", 10),
        ("main", 10),
    ]:
        assert hub_files(hub_server, revision) == local_files(out / f"checkpoint-{step}"), revision
    # The repair is one commit too (a new branch starts from main, as on the Hub, so count its own commits).
    assert [t for t in state.branch_commits(REPO, "checkpoint-5") if t.startswith("checkpoint-5:")] == [
        "checkpoint-5: weights and training state"
    ]
    code, report = audited(hub_server, REPO, f"local={out}")
    assert code == 0 and report["ok"], report


def pythia_style_repo(hub, main_step: int) -> str:
    """EleutherAI's layout: step{N} branches holding weights and config, no Parc manifest; main = a step."""
    repo_id = "EleutherAI/pythia-mini"
    hub.state.repos[repo_id] = Repo(private=False)
    hub.state.commit(repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs\n"})
    weights = {
        0: b"w0" * 64,
        1000: b"w1000" * 64,
        2000: b"final" * 64,
        143000: b"final" * 64,
    }  # 2000: a re-upload of the final model
    for step, data in weights.items():
        hub.state.commit(
            repo_id, f"step{step}", {"config.json": b'{"model_type": "gpt_neox"}', "model.safetensors": data}
        )
    repo = hub.state.repos[repo_id]
    repo.branches["main"] = repo.branches[f"step{main_step}"]
    return repo_id


def test_a_pythia_style_repo_is_audited_read_only(hub_server, tmp_path):
    repo_id = pythia_style_repo(hub_server, main_step=1000)
    code, report = audited(hub_server, repo_id)
    assert code == 1 and report["written_by_parc"] is False and report["branch_template"] == "step{N}"
    assert [row["step"] for row in report["revisions"]] == [0, 1000, 2000, 143000]  # by step, not as text
    assert report["duplicates"] == [[2000, 143000]]
    assert report["main"] == "main holds step 1000, not the final step 143000"
    assert report["missing"] is None  # no schedule is known for a repo Parc did not write

    hub_server.state.repos[repo_id].branches["main"] = hub_server.state.repos[repo_id].branches["step143000"]
    code, report = audited(hub_server, repo_id)
    assert report["main"] == "ok" and report["duplicates"] == [[2000, 143000]]

    commits = len(hub_server.state.repos[repo_id].commits)
    (tmp_path / "hub_journal").mkdir()
    refused = cli(hub_server, "parc.revisions", repo_id, "audit=true", f"local={tmp_path}", "repair=true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "not written by Parc" in refused.stderr
    assert len(hub_server.state.repos[repo_id].commits) == commits  # read-only: nothing was committed


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give either a repo id"),
        (["org/x", "repair=true", "audit=true"], "add local="),
        (["org/x", "local=."], "go with audit=true"),
        (["org/x", "audit=true", "local=/nonexistent-run"], "is not a directory"),
    ],
)
def test_bad_audit_arguments_are_one_line_errors(args, message, capsys):
    from parc import revisions

    with pytest.raises(SystemExit) as exited:
        revisions.main(args)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1 and message in error


def test_a_grid_root_without_published_runs_is_refused(hub_server, tmp_path):
    done = cli(hub_server, "parc.revisions", "audit=true", f"grid={tmp_path}")
    assert done.returncode == 2 and "no run under" in done.stderr and done.stderr.count("\n") == 1
