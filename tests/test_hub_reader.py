"""parc.hub.reader, the one Hub reader: the `hub:` grammar, revisions sorted by step, verified fetches (a Parc
revision against its manifest, any other against the LFS sha256 / git blob id the Hub lists), retries; and
the rules that keep it the only one (no module outside parc/hub imports huggingface_hub's download or listing
functions; no private method called across modules).

Clients run in a subprocess pointed at tests/hub_server.py (HF_ENDPOINT is read when huggingface_hub is
imported; this process is offline, see conftest); the server runs here, so tests plant repos, corrupt stored
bytes and inject faults directly.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parc.errors import ParcError
from parc.hub.reader import HubSpec, parse_hub_spec, resume_spec

from hub_server import Faults, Repo, hub_server  # noqa: F401  (the fixture)

SRC = Path(__file__).resolve().parents[1] / "src" / "parc"
LFS_RULE = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"

CHILD = """
import json, sys
from pathlib import Path
from parc.errors import ParcError
from parc.hub.reader import *
from parc.hub.repo import RetryPolicy
args = json.loads(sys.argv[1])
FAST = RetryPolicy(0.05, 0.2, 30)
def report(**values):
    print(json.dumps(values))
"""


def reader(hub, body: str, **args) -> dict:
    """Run CHILD + body in a fresh interpreter pointed at the test Hub; its last stdout line, as JSON."""
    env = {**os.environ, **hub.env()}
    env.pop("HF_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD + textwrap.dedent(body), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def plant(hub, repo_id: str, branches: dict, gitattributes: bytes = LFS_RULE) -> None:
    """A repo whose `branches` (name -> {path: bytes}) each hold those files and .gitattributes."""
    hub.state.repos[repo_id] = Repo(private=False)
    hub.state.commit(repo_id, "main", {".gitattributes": gitattributes})
    for name, files in branches.items():
        hub.state.commit(repo_id, name, {".gitattributes": gitattributes, **files})


def parc_revision(step: int) -> dict:
    """The files of a Parc checkpoint revision with its manifest (sizes and sha256, as parc.store writes it)."""
    files = {
        "model.safetensors": f"weights of step {step} ".encode() * 40,
        "config.json": b'{"model_type": "gpt_neox"}',
        "training_state/trainer_state.json": json.dumps({"step": step}).encode(),
    }
    manifest = {
        "step": step,
        "train_state": True,
        "files": {rel: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for rel, data in files.items()},
    }
    return {**files, "parc_checkpoint.json": json.dumps(manifest, indent=1, sort_keys=True).encode()}


def corrupt(hub, repo_id: str, branch: str, path: str) -> None:
    """The object store serves other bytes (same size) than the commit's listing names."""
    files = hub.state.repos[repo_id].commits[hub.state.repos[repo_id].branches[branch]]
    data = files[path]
    files[path] = bytes([data[0] ^ 0xFF]) + data[1:]


# --- the grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, spec",
    [
        ("hub:org/name", HubSpec("org/name", None)),
        ("hub:EleutherAI/pythia-160m@step1000", HubSpec("EleutherAI/pythia-160m", "step1000")),
        ("hub:my-org/parc.run_1@checkpoint-2000", HubSpec("my-org/parc.run_1", "checkpoint-2000")),
        ("hub:org/name@refs/pr/1", HubSpec("org/name", "refs/pr/1")),
    ],
)
def test_good_specs_parse_and_print_back(text, spec):
    assert parse_hub_spec(text) == spec and str(spec) == text


@pytest.mark.parametrize(
    "text, why",
    [
        ("hub:", "names no repository"),
        ("hub:@main", "names no repository"),
        ("hub:pythia-160m", "'pythia-160m' names no organisation"),
        ("hub:org/name@", "'@' is followed by no revision"),
        ("hub:org/na me", "spaces are not allowed"),
        ("hub:org/name@step 10", "spaces are not allowed"),
        ("hub:org/", "'org/' is not a repo id"),
        ("hub:a/b/c", "'a/b/c' is not a repo id"),
        ("hub:org--x/name", "is not a repo id"),
        ("hub:org/name@a@b", "'a@b' is not a revision name"),
        ("hub:org/name@a..b", "'a..b' is not a revision name"),
        ("org/name", "a Hub spec starts with hub:"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_argument_and_the_grammar(text, why):
    with pytest.raises(ParcError) as caught:
        parse_hub_spec(text, "runs")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"runs={text}: ") and why in message
    assert "hub:<org/name>[@<revision>]" in message


def test_resume_names_a_revision_of_the_runs_own_repo():
    assert resume_spec("hub:checkpoint-10", "org/run") == HubSpec("org/run", "checkpoint-10")
    assert resume_spec("hub:org/run@step5", "org/run") == HubSpec("org/run", "step5")  # the full form, same repo
    for text, own, why in [
        ("hub:", "org/run", "name the revision"),
        ("hub:a b", "org/run", "is not a revision name"),
        ("hub:other/repo@checkpoint-1", "org/run", "use init_from=hub:other/repo@checkpoint-1"),
        ("hub:checkpoint-1", None, "needs hub.repo_id"),
    ]:
        with pytest.raises(ParcError) as caught:
            resume_spec(text, own)
        assert "\n" not in str(caught.value) and why in str(caught.value), (text, str(caught.value))


# --- the rules that keep it the only reader -----------------------------------------------------------

ALLOWED_CLIENT_MODULES = {"huggingface_hub.errors", "huggingface_hub.constants"}  # no I/O in either


def client_imports(path: Path) -> list:
    """(line, what) for every import of huggingface_hub that can download or list, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name)
                for a in node.names
                if a.name.split(".")[0] == "huggingface_hub" and a.name not in ALLOWED_CLIENT_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "huggingface_hub":
            if node.module not in ALLOWED_CLIENT_MODULES:
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_the_client_check_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from huggingface_hub import hf_hub_download, HfApi\n    import huggingface_hub\n"
        "from huggingface_hub.errors import EntryNotFoundError\n"
    )
    assert client_imports(sample) == [
        (2, "huggingface_hub.hf_hub_download"),
        (2, "huggingface_hub.HfApi"),
        (3, "huggingface_hub"),
    ]


def test_no_module_outside_hub_imports_the_hub_client():
    offenders = [
        f"{path.relative_to(SRC.parent)}:{line} imports {what}"
        for path in sorted(SRC.rglob("*.py"))
        if "hub" not in path.relative_to(SRC).parts[:1]
        for line, what in client_imports(path)
    ]
    assert offenders == [], "read the Hub through parc.hub.reader instead:\n" + "\n".join(offenders)


def private_methods(tree: ast.AST) -> set:
    return {
        item.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        and item.name.startswith("_")
        and not item.name.startswith("__")
    }


def test_no_private_method_of_a_hub_class_is_called_from_another_module():
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(SRC.rglob("*.py"))}
    hub_private = set().union(
        *(private_methods(tree) for path, tree in trees.items() if path.relative_to(SRC).parts[0] == "hub")
    )
    assert "_call" in hub_private  # HubRepo's retry wrapper: private, so the check has something to guard
    offenders = []
    for path, tree in trees.items():
        own = private_methods(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in hub_private
                and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{path.relative_to(SRC.parent)}:{node.lineno} uses .{node.attr}")
    assert offenders == [], "\n".join(offenders)


# --- against the Hub ----------------------------------------------------------------------------------

LIST = """
found = {}
for repo_id, branch in args["repos"]:
    repo = open_repo(repo_id, branch, FAST)
    found[repo_id] = {"template": repo.template.template, "revisions": revisions_by_step(repo)}
try:
    open_repo("org/absent", None, FAST)
except ParcError as exc:
    found["absent"] = str(exc)
report(**found)
"""


def test_revisions_are_listed_by_step_with_either_template(hub_server):
    parc_steps, pythia_steps = [0, 5, 9, 10, 100], [0, 9, 10, 1000, 143000]
    plant(
        hub_server,
        "org/parc-run",
        {**{f"checkpoint-{s}": {"a.txt": b"x"} for s in parc_steps}, "feature": {}, "checkpoint-05": {}, "step3": {}},
    )
    plant(hub_server, "EleutherAI/pythia-mini", {f"step{s}": {"a.txt": b"x"} for s in pythia_steps})
    found = reader(hub_server, LIST, repos=[["org/parc-run", "checkpoint-{N}"], ["EleutherAI/pythia-mini", None]])
    assert found["org/parc-run"]["revisions"] == [[s, f"checkpoint-{s}"] for s in sorted(parc_steps)]
    assert found["EleutherAI/pythia-mini"]["template"] == "step{N}"  # guessed from the branches
    assert found["EleutherAI/pythia-mini"]["revisions"] == [[s, f"step{s}"] for s in sorted(pythia_steps)]
    assert sorted(f"step{s}" for s in pythia_steps) != [f"step{s}" for s in sorted(pythia_steps)]  # text order differs
    assert "repository org/absent not found on the Hub" in found["absent"] and "\n" not in found["absent"]


FETCH_CHECKPOINT = """
repo = open_repo(args["repo"], "checkpoint-{N}", FAST)
out = {}
for revision in args["revisions"]:
    try:
        path = fetch_checkpoint(repo, complete_revision(repo, revision, "test"), Path(args["out"]))
        out[revision] = {"path": str(path)}
    except ParcError as exc:
        out[revision] = {"error": str(exc)}
report(**out)
"""


def local_tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_parc_revision_is_fetched_verified_and_a_corrupt_one_leaves_nothing(hub_server, tmp_path):
    revisions = {f"checkpoint-{s}": parc_revision(s) for s in (5, 10)}
    plant(hub_server, "org/parc-run", revisions)
    corrupt(hub_server, "org/parc-run", "checkpoint-10", "model.safetensors")
    out = tmp_path / "out"
    found = reader(
        hub_server, FETCH_CHECKPOINT, repo="org/parc-run", revisions=["checkpoint-5", "checkpoint-10"], out=str(out)
    )
    assert found["checkpoint-5"]["path"] == str(out / "checkpoint-5")
    assert local_tree(out / "checkpoint-5") == revisions["checkpoint-5"]  # every listed file and the manifest
    error = found["checkpoint-10"]["error"]
    assert "\n" not in error and "model.safetensors does not match its sha256" in error and "org/parc-run" in error
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-5"]  # no checkpoint-10, no leftover download

    # a copy already there and intact is kept; a damaged one is replaced by a verified fetch
    for damage, downloads in [(None, 0), ("config.json", 1)]:
        if damage:
            (out / "checkpoint-5" / damage).write_bytes(b'{"model_type": "gpt_neoy"}')
        hub_server.state.requests.clear()
        again = reader(hub_server, FETCH_CHECKPOINT, repo="org/parc-run", revisions=["checkpoint-5"], out=str(out))
        assert again["checkpoint-5"]["path"] == str(out / "checkpoint-5")
        assert local_tree(out / "checkpoint-5") == revisions["checkpoint-5"]
        assert hub_server.count("GET", r"/resolve/.*/model\.safetensors$") == downloads


FETCH_REVISION = """
repo = open_repo(args["repo"], None, FAST)
out = {"files": {}}
listed = repo.files(args["revisions"][0])
for rel, meta in listed.files.items():
    out["files"][rel] = {"size": meta.size, "sha256": meta.sha256, "blob_id": meta.blob_id}
if args.get("listings"):  # the same facts through the client's other two listings, as the Hub gives them
    from huggingface_hub import HfApi
    for name, entries in [("tree", HfApi().list_repo_tree(args["repo"], revision=args["revisions"][0])),
                          ("paths_info", HfApi().get_paths_info(args["repo"], sorted(out["files"]),
                                                               revision=args["revisions"][0]))]:
        out[name] = {e.path: {"size": e.size, "sha256": e.lfs.sha256 if e.lfs else None, "blob_id": e.blob_id}
                     for e in entries}
for revision in args["revisions"]:
    try:
        out[revision] = {"path": str(fetch_revision(repo, revision, Path(args["out"]) / revision,
                                                    exclude=args.get("exclude", ())))}
    except ParcError as exc:
        out[revision] = {"error": str(exc)}
report(**out)
"""


def test_a_foreign_revision_is_verified_by_the_lfs_sha256_and_git_blob_ids(hub_server, tmp_path):
    from hub_server import git_blob_oid

    weights = {s: bytes(range(256)) * (s + 2) for s in (0, 1000, 2000, 3000)}
    plant(
        hub_server,
        "EleutherAI/pythia-mini",
        {f"step{s}": {"model.safetensors": data, "config.json": b'{"a": 1}'} for s, data in weights.items()},
    )
    corrupt(hub_server, "EleutherAI/pythia-mini", "step2000", "model.safetensors")  # an LFS object gone bad
    corrupt(hub_server, "EleutherAI/pythia-mini", "step3000", "config.json")  # a regular git file gone bad
    out = tmp_path / "out"
    found = reader(
        hub_server,
        FETCH_REVISION,
        repo="EleutherAI/pythia-mini",
        out=str(out),
        revisions=["step0", "step1000", "step2000", "step3000"],
        listings=True,
    )
    # what the Hub lists: the LFS pointer's sha256 for the weights, the git blob id for the regular file
    assert found["files"]["model.safetensors"]["sha256"] == hashlib.sha256(weights[0]).hexdigest()
    assert found["files"]["model.safetensors"]["size"] == len(weights[0])
    assert found["files"]["config.json"] == {"size": 8, "sha256": None, "blob_id": git_blob_oid(b'{"a": 1}')}
    assert found["tree"] == found["paths_info"] == found["files"]
    for step in (0, 1000):
        assert found[f"step{step}"]["path"] == str(out / f"step{step}")
        assert local_tree(out / f"step{step}") == {"model.safetensors": weights[step], "config.json": b'{"a": 1}'}
    lfs_error, blob_error = found["step2000"]["error"], found["step3000"]["error"]
    assert "model.safetensors does not match the LFS sha256 the Hub lists" in lfs_error and "\n" not in lfs_error
    assert "config.json does not match the git blob id the Hub lists" in blob_error and "\n" not in blob_error
    assert sorted(p.name for p in out.iterdir()) == ["step0", "step1000"]  # nothing of the corrupt ones


def test_a_parc_revision_for_evaluation_leaves_the_training_state_out(hub_server, tmp_path):
    revision = parc_revision(5)
    plant(hub_server, "org/parc-run", {"checkpoint-5": revision})
    out = tmp_path / "out"
    found = reader(
        hub_server,
        FETCH_REVISION,
        repo="org/parc-run",
        out=str(out),
        revisions=["checkpoint-5"],
        exclude=["training_state/*"],
    )
    assert found["checkpoint-5"]["path"] == str(out / "checkpoint-5")
    model_only = {rel: data for rel, data in revision.items() if not rel.startswith("training_state/")}
    assert local_tree(out / "checkpoint-5") == model_only


def test_transient_server_errors_are_retried(hub_server, tmp_path):
    revision = parc_revision(5)
    plant(hub_server, "org/parc-run", {"checkpoint-5": revision})
    hub_server.state.faults = Faults(rate=1.0, kinds=("503", "500"), only=r"/resolve/.*model\.safetensors$", limit=3)
    out = tmp_path / "out"
    found = reader(hub_server, FETCH_CHECKPOINT, repo="org/parc-run", revisions=["checkpoint-5"], out=str(out))
    assert found["checkpoint-5"]["path"] == str(out / "checkpoint-5")
    assert local_tree(out / "checkpoint-5") == revision
    failed = [
        status
        for _, _, path, status in hub_server.state.requests
        if path.endswith("model.safetensors") and status in (500, 503)
    ]
    assert len(failed) == 3 and hub_server.state.faults.limit == 0  # every injected fault was met, then retried
