"""Hub publishing and resuming, with the real huggingface_hub client against tests/hub_server.py.

Every client runs in a subprocess, as on a cluster: HF_ENDPOINT must be set before huggingface_hub is
imported, and this test process has it offline (conftest). The server runs in this process, so the tests
can read the Hub's state directly, inject faults, take it down, and hold a request while a client is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from parc.errors import ParcError
from parc.store.checkpoint import MANIFEST, STATE_DIR
from parc.store.fileio import atomic_write_json

from conftest import run_cli
from hub_server import Faults, hub_server  # noqa: F401  (the fixture)

REPO = "org/parc-pythia-seed0-shard0"  # what hub.repo_id=org derives for run_name=parc
TOKEN = "hf_parcTestToken0123456789abcdefXYZ"
CONFIG = {
    "checkpoint": {"schedule": "parc", "every": 5, "steps": [], "interval": None},
    "trainer": {"max_steps": 10},
}  # as portable_config stores it: the schedule is 0, 5, 10

CHILD = """
import json, sys
from pathlib import Path
from parc.config import compose
from parc.hub.publisher import Publisher, resolve_hub_checkpoint
from parc.training.metrics import log_to_stderr
log_to_stderr()
args = json.loads(sys.argv[1])
out = Path(args["out"])
cfg = compose(args["overrides"])
"""

PUBLISH = """
publisher = Publisher.from_config(cfg, out, True)
publisher.start()
for step in args["steps"]:
    publisher.submit(step, out / f"checkpoint-{step}")
publisher.close(args["final"])
print("pending after close:", sorted(publisher.pending_steps()))
"""


# --- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """A run directory with complete checkpoints 0, 5, 9 and 10 of a tiny GPT-NeoX, written by parc.store.checkpoint."""
    import torch
    from accelerate import Accelerator
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from parc.store import checkpoint

    root = tmp_path_factory.mktemp("hub-template")
    words = ["<unk>", "<eos>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>").save_pretrained(
        root / "tok"
    )
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=len(words),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    accelerator = Accelerator(cpu=True)
    for step in range(11):
        if step:
            ids = torch.randint(0, len(words), (2, 8))
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if step in (0, 5, 9, 10):
            checkpoint.save(
                accelerator,
                root / "run",
                step,
                model,
                optimizer,
                scheduler,
                root / "tok",
                {"step": step, "tokens": 16 * step, "config": CONFIG},
                scheduled=step != 9,
            )
    return root / "run"


def copy_run(template: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(template, out)
    return out


def overrides(tmp_path: Path, out: Path, *extra: str) -> list:
    return [
        "experiment=demo",
        "arch=pythia",
        "run_name=parc",
        f"paths.root={tmp_path}",
        f"output_dir={out}",
        "hub.repo_id=org",
        "hub.retry_initial_s=0.05",
        "hub.retry_max_s=0.2",
        "hub.retry_timeout_s=90",
        "hub.max_commits_per_hour=360000",
        "trainer.max_steps=10",
        "checkpoint.every=5",
        *extra,
    ]


def client(hub, body: str, tmp_path: Path, out: Path, *extra: str, token=None, wait=True, **args):
    """Run CHILD + body in a fresh interpreter pointed at the test Hub."""
    env = {**os.environ, **hub.env(token)}
    if not token:
        env.pop("HF_TOKEN", None)
    payload = json.dumps({"out": str(out), "overrides": overrides(tmp_path, out, *extra), **args})
    command = [sys.executable, "-c", CHILD + textwrap.dedent(body), payload]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def cli(hub, *args, token=None):
    env = hub.env(token)
    env["HF_TOKEN"] = token or ""
    return run_cli(*args, env=env, timeout=240)


def local_files(checkpoint_dir: Path) -> dict:
    return {
        str(p.relative_to(checkpoint_dir)): p.read_bytes() for p in sorted(checkpoint_dir.rglob("*")) if p.is_file()
    }


def hub_files(hub, revision: str) -> dict:
    files = dict(hub.state.files(REPO, revision))
    files.pop(".gitattributes")
    return files


def without_card(files: dict, revision: str) -> dict:
    """main of a run parc.train wrote also holds the model card (README.md, loss_curve.png), outside the manifest:
    checked to be there, as a card huggingface_hub reads, and left out of the byte-for-byte comparison."""
    if revision != "main":
        assert "README.md" not in files, revision  # the card goes on main only
        return files
    from huggingface_hub import ModelCard

    files = dict(files)
    card = ModelCard(files.pop("README.md").decode())
    assert card.data.library_name == "transformers" and files.pop("loss_curve.png").startswith(b"\x89PNG")
    return files


def assert_complete(hub, out: Path, revision: str, step: int) -> None:
    assert hub_files(hub, revision) == local_files(out / f"checkpoint-{step}"), revision  # byte-identical, no more


def journal(out: Path) -> dict:
    return {
        json.loads(p.read_text())["revision"]: json.loads(p.read_text())["state"]
        for p in (out / "hub_journal").glob("*.json")
        if p.name != "repo.json"
    }


def rewrite(checkpoint_dir: Path, rel: str, data: bytes) -> None:
    """Replace one file of a checkpoint and fix its manifest entry, as a forger (or a buggy writer) would."""
    import hashlib

    (checkpoint_dir / rel).write_bytes(data)
    manifest = json.loads((checkpoint_dir / MANIFEST).read_text())
    manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_json(checkpoint_dir / MANIFEST, manifest)


# --- tests --------------------------------------------------------------------------------------------


def test_round_trip_byte_identical_one_commit_per_revision_and_loadable(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    # One 429 (Retry-After: 1 s) on the first branch creation: the publisher must wait that long.
    hub_server.state.faults = Faults(rate=1.0, kinds=("429",), only=r"^POST .*/branch/", limit=1, retry_after="1")
    result = client(hub_server, PUBLISH, tmp_path, out, steps=[0, 5, 10], final=10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pending after close: []" in result.stdout
    repo = hub_server.state.repos[REPO]
    assert repo.private
    assert set(repo.branches) == {"main", "checkpoint-0", "checkpoint-5", "checkpoint-10"}
    for revision, step in [("checkpoint-0", 0), ("checkpoint-5", 5), ("checkpoint-10", 10), ("main", 10)]:
        assert_complete(hub_server, out, revision, step)
        added = [changed for branch, changed, _ in repo.history[1:] if branch == revision]  # [0]: the repo's creation
        assert len(added) == 1 and MANIFEST in added[0], (revision, added)  # files and manifest: one commit
    assert set(journal(out).values()) == {"pushed"}
    branch_posts = [(t, s) for t, m, p, s in hub_server.state.requests if m == "POST" and "/branch/" in p]
    assert branch_posts[0][1] == 429 and branch_posts[1][0] - branch_posts[0][0] >= 1.0  # Retry-After honoured

    fresh = tmp_path / "fresh"
    loaded = client(
        hub_server,
        """
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from parc.store import checkpoint
        model = AutoModelForCausalLM.from_pretrained(args["repo"], revision="checkpoint-5")
        tokenizer = AutoTokenizer.from_pretrained(args["repo"], revision="checkpoint-5")
        saved, loaded = load_file(args["weights"]), model.state_dict()
        shared = set(saved) & set(loaded)  # a tied output matrix is saved once
        assert len(shared) >= len(saved) - 1 and all(torch.equal(loaded[k], saved[k]) for k in shared)
        print("ids", tokenizer("a b z")["input_ids"])
        path = resolve_hub_checkpoint(cfg, out, None)
        state = checkpoint.load_train_state(path, 0)
        print("resumable", path.name, state["trainer"]["step"])
        from huggingface_hub import HfApi
        print("commits", json.dumps({b: [c.title for c in HfApi().list_repo_commits(args["repo"], revision=b)]
                                     for b in ("checkpoint-0", "checkpoint-5", "checkpoint-10", "main")}))
    """,
        tmp_path,
        fresh,
        repo=REPO,
        weights=str(out / "checkpoint-5" / "model.safetensors"),
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    commits = json.loads(loaded.stdout.split("commits ", 1)[1])  # as the client lists them, newest first
    for revision, history in commits.items():
        assert history == [f"{revision}: weights and training state", "initial commit"], (revision, history)
    assert "ids [2, 3, 27]" in loaded.stdout and "resumable checkpoint-10 10" in loaded.stdout
    assert local_files(fresh / "checkpoint-10") == local_files(out / "checkpoint-10")
    assert sorted(p.name for p in fresh.iterdir()) == ["checkpoint-10"]  # no temp dir, no client cache left


def test_faults_and_an_outage_lose_nothing(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    hub_server.state.faults = Faults(rate=0.15, seed=3)  # 500, 503, 429, dropped before/after taking effect
    pusher = client(hub_server, PUBLISH, tmp_path, out, steps=[0, 5, 9, 10], final=10, wait=False)
    deadline = time.monotonic() + 60
    while hub_server.count("POST", r"/commit/") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    hub_server.stop()  # the Hub goes away mid-push, open connections included, and comes back
    time.sleep(0.5)
    hub_server.start()
    stdout, stderr = pusher.communicate(timeout=240)
    assert pusher.returncode == 0, stderr[-3000:]
    injected = [s for *_, s in hub_server.state.requests if s in (500, 503, 429, "drop")]
    assert len(injected) >= 5, injected
    assert "retrying" in stderr
    for revision, step in [
        ("checkpoint-0", 0),
        ("checkpoint-5", 5),
        ("checkpoint-9", 9),
        ("checkpoint-10", 10),
        ("main", 10),
    ]:
        assert_complete(hub_server, out, revision, step)
    assert set(journal(out).values()) == {"pushed"}

    fresh = tmp_path / "fresh"  # and the download side, through the same faults
    loaded = client(hub_server, "print('got', resolve_hub_checkpoint(cfg, out, 'checkpoint-9').name)", tmp_path, fresh)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert local_files(fresh / "checkpoint-9") == local_files(out / "checkpoint-9")


def test_kill_9_mid_push_then_restart_finishes_and_listing_flags_gaps(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    # Hold the manifest commit of checkpoint-9: its files are on the branch, its manifest never arrives.
    hub_server.state.hold = lambda method, path, body: (
        path.endswith("/commit/checkpoint-9") and MANIFEST.encode() in body
    )
    pusher = client(hub_server, PUBLISH, tmp_path, out, steps=[0, 9, 10], final=10, wait=False)
    assert hub_server.state.held.wait(120), pusher.communicate()[1][-3000:]
    os.kill(pusher.pid, signal.SIGKILL)
    pusher.communicate()
    hub_server.state.hold = None
    hub_server.state.release.set()
    assert journal(out) == {
        "checkpoint-0": "pushed",
        "checkpoint-9": "pending",
        "checkpoint-10": "pending",
        "main": "pending",
    }

    listing = cli(hub_server, "parc.revisions", REPO, "json=true")
    assert listing.returncode == 0, listing.stderr[-3000:]
    report = json.loads(listing.stdout)
    assert [(r["revision"], r["complete"]) for r in report["revisions"]] == [
        ("checkpoint-0", True),
        ("checkpoint-9", False),
    ]
    assert report["incomplete"] == [9] and report["missing"] == [5]  # schedule 0, 5, 10 from the trainer state

    restarted = client(hub_server, PUBLISH, tmp_path, out, steps=[], final=None)  # the next run's start()
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "checkpoint-9, checkpoint-10, main" in restarted.stderr
    for revision, step in [("checkpoint-0", 0), ("checkpoint-9", 9), ("checkpoint-10", 10), ("main", 10)]:
        assert_complete(hub_server, out, revision, step)
    assert (
        sum(1 for branch, *_ in hub_server.state.repos[REPO].history if branch == "checkpoint-0") == 1
    )  # not re-pushed

    table = cli(hub_server, "parc.revisions", REPO)
    assert table.returncode == 0, table.stderr[-3000:]
    rows = [line.split()[1] for line in table.stdout.splitlines() if "checkpoint-" in line]
    assert rows == ["checkpoint-0", "checkpoint-9", "checkpoint-10"]  # by step, not as text
    assert "main = step 10" in table.stdout and "missing: 5" in table.stdout and "INCOMPLETE" not in table.stdout


def test_offline_stages_and_sync_pushes_exactly_the_staged(hub_server, template, tmp_path, capsys):
    out = copy_run(template, tmp_path)
    staged = client(hub_server, PUBLISH, tmp_path, out, "hub.mode=offline", steps=[0, 5, 10], final=10)
    assert staged.returncode == 0, staged.stderr[-3000:]
    assert hub_server.state.requests == []  # nothing sent
    assert "pending after close: [0, 5, 10]" in staged.stdout

    from parc import sync  # in this process where no network is needed (it is offline here)

    sync.main([str(out), "dry_run=true"])
    assert (
        "would push 4 revisions to org/parc-pythia-seed0-shard0: checkpoint-0, checkpoint-5, checkpoint-10, main"
        in capsys.readouterr().out
        and hub_server.state.requests == []
    )
    synced = cli(hub_server, "parc.sync", str(out))
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert set(hub_server.state.repos[REPO].branches) == {"main", "checkpoint-0", "checkpoint-5", "checkpoint-10"}
    for revision, step in [("checkpoint-0", 0), ("checkpoint-5", 5), ("checkpoint-10", 10), ("main", 10)]:
        assert_complete(hub_server, out, revision, step)
    sync.main([str(out)])
    assert "nothing to push" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exited:
        sync.main([str(tmp_path)])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1 and "hub_journal" in error


def test_a_full_queue_makes_submit_wait_and_say_so_but_drops_nothing(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    hub_server.state.hold = lambda method, path, body: path.endswith("/commit/checkpoint-0")  # the uploader stalls
    pusher = client(hub_server, PUBLISH, tmp_path, out, "hub.queue_size=1", steps=[0, 5, 9, 10], final=10, wait=False)
    deadline = time.monotonic() + 120
    while not (hub_server.state.held.is_set() and (out / "hub_journal" / "checkpoint-9.json").exists()):
        assert pusher.poll() is None and time.monotonic() < deadline, pusher.communicate()[1][-3000:]
        time.sleep(0.05)
    # 0 is being pushed, 5 fills the queue, 9 is journaled and its submit() now waits: nothing of 10 yet.
    assert not (out / "hub_journal" / "checkpoint-10.json").exists()
    hub_server.state.hold = None
    hub_server.state.release.set()
    stdout, stderr = pusher.communicate(timeout=120)
    assert pusher.returncode == 0, stderr[-3000:]
    assert "the upload queue is full (hub.queue_size=1); training waits for the uploader (checkpoint-9)" in stderr
    assert "waited" in stderr
    for revision, step in [
        ("checkpoint-0", 0),
        ("checkpoint-5", 5),
        ("checkpoint-9", 9),
        ("checkpoint-10", 10),
        ("main", 10),
    ]:
        assert_complete(hub_server, out, revision, step)


def test_weights_only_publishing(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    result = client(hub_server, PUBLISH, tmp_path, out, "hub.push_train_state=false", steps=[5], final=None)
    assert result.returncode == 0, result.stderr[-3000:]
    files = hub_files(hub_server, "checkpoint-5")
    local = {k: v for k, v in local_files(out / "checkpoint-5").items() if not k.startswith(STATE_DIR)}
    manifest = json.loads(files.pop(MANIFEST))
    assert files == {k: v for k, v in local.items() if k != MANIFEST}
    assert manifest["train_state"] is False and sorted(manifest["files"]) == sorted(files)

    resumed = client(hub_server, "resolve_hub_checkpoint(cfg, out, None)", tmp_path, tmp_path / "fresh")
    assert resumed.returncode != 0 and "none with the training state" in resumed.stderr


def test_auth_failure_is_one_line_and_the_token_never_leaks(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    hub_server.state.token = TOKEN
    staged = client(hub_server, PUBLISH, tmp_path, out, "hub.mode=offline", steps=[0, 5, 10], final=10)
    assert staged.returncode == 0, staged.stderr[-3000:]

    refused = cli(hub_server, "parc.sync", str(out), token="hf_wrongToken")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "HTTP 401" in refused.stderr and "HF_TOKEN" in refused.stderr
    assert set(journal(out).values()) == {"pending"}  # nothing lost

    # A checkpoint that would publish a local path is refused by name; the ones before it go through.
    rewrite(
        out / "checkpoint-10",
        f"{STATE_DIR}/trainer_state.json",
        json.dumps({"step": 10, "tokens": 160, "config": {**CONFIG, "output_dir": str(out)}}).encode(),
    )
    leaky = cli(hub_server, "parc.sync", str(out), token=TOKEN)
    assert leaky.returncode == 2
    assert (
        "refusing to push checkpoint-10/training_state/trainer_state.json: it contains the local path" in leaky.stderr
    )
    assert "not pushed: checkpoint-10, main" in leaky.stderr
    assert journal(out) == {
        "checkpoint-0": "pushed",
        "checkpoint-5": "pushed",
        "checkpoint-10": "pending",
        "main": "pending",
    }

    logs = refused.stdout + refused.stderr + leaky.stdout + leaky.stderr + staged.stdout + staged.stderr
    assert TOKEN not in logs
    for commit in hub_server.state.repos[REPO].commits.values():
        for path, data in commit.items():
            assert TOKEN.encode() not in data and str(tmp_path).encode() not in data, path


def test_a_planted_pickle_is_refused_and_never_runs(hub_server, template, tmp_path):
    out = copy_run(template, tmp_path)
    marker = tmp_path.parent / f"pwned-{tmp_path.name}"  # (a path inside the run would be refused as a leak)
    payload = (
        f"import torch, os\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'state': Evil()}}, '{tmp_path / 'evil.pt'}')\n"
    )
    subprocess.run([sys.executable, "-c", payload], check=True)
    rewrite(out / "checkpoint-10", f"{STATE_DIR}/optimizer.pt", (tmp_path / "evil.pt").read_bytes())
    pushed = client(hub_server, PUBLISH, tmp_path, out, steps=[10], final=None)
    assert pushed.returncode == 0, pushed.stderr[-3000:]

    resumed = client(
        hub_server,
        """
        from parc.store import checkpoint
        from parc.errors import ParcError
        path = resolve_hub_checkpoint(cfg, out, None)
        try:
            checkpoint.load_train_state(path, 0)
        except ParcError as exc:
            print("refused:", exc)
    """,
        tmp_path,
        tmp_path / "fresh",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "refused: refusing to load" in resumed.stdout and "optimizer.pt" in resumed.stdout
    assert not marker.exists()


@pytest.mark.slow
def test_training_publishes_every_revision_and_resumes_from_the_hub_bit_identically(hub_server, tmp_path):
    hub_server.state.token = TOKEN
    out = tmp_path / "run"
    args = [
        "experiment=demo",
        "arch=pythia",
        f"paths.root={tmp_path}",
        f"output_dir={out}",
        "data.max_documents=4",
        "trainer.max_steps=20",
        "checkpoint.every=5",
        "trainer.progress=false",
        "hub.repo_id=org/e2e",
        "hub.retry_initial_s=0.05",
        "hub.retry_max_s=0.2",
        "hub.max_commits_per_hour=360000",
    ]
    # The uploader stalls on checkpoint-15's manifest; training goes on to step 20, then waits in close(): kill -9.
    hub_server.state.hold = lambda method, path, body: (
        path.endswith("/commit/checkpoint-15") and MANIFEST.encode() in body
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "parc.train", *args],
        env={**os.environ, **hub_server.env(TOKEN)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not (hub_server.state.held.is_set() and (out / "checkpoint-20" / MANIFEST).exists()):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first_logs = "".join(first.communicate())
    hub_server.state.hold = None
    hub_server.state.release.set()
    uninterrupted = (out / "checkpoint-20" / "model.safetensors").read_bytes()
    shutil.rmtree(out)  # the node is gone; only the Hub remains

    resumed = run_cli("parc.train", *args, env=hub_server.env(TOKEN))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-10" in resumed.stdout  # 15 was incomplete
    assert (out / "checkpoint-20" / "model.safetensors").read_bytes() == uninterrupted
    assert hub_server.state.files("org/e2e", "main")["model.safetensors"] == uninterrupted

    loaded = client(
        hub_server,
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from parc.hub.repo import HubRepo, survey
        for step in (0, 5, 10, 15, 20):
            AutoModelForCausalLM.from_pretrained("org/e2e", revision=f"checkpoint-{step}")
        print(AutoTokenizer.from_pretrained("org/e2e", revision="checkpoint-20").vocab_size)
        print(json.dumps(survey(HubRepo("org/e2e"))))
    """,
        tmp_path,
        tmp_path / "loader",
        token=TOKEN,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    vocab_size, report = loaded.stdout.splitlines()[-2:]
    report = json.loads(report)
    assert vocab_size == "2048" and report["main"] == 20 and report["missing"] == []
    assert [(r["step"], r["complete"], r["train_state"]) for r in report["revisions"]] == [
        (s, True, True) for s in (0, 5, 10, 15, 20)
    ]

    logs = first_logs + resumed.stdout + resumed.stderr + loaded.stdout + loaded.stderr
    local = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert TOKEN not in logs and not any(TOKEN.encode() in data for data in local)
    for commit in hub_server.state.repos["org/e2e"].commits.values():
        for path, data in commit.items():
            assert TOKEN.encode() not in data and str(tmp_path).encode() not in data, path


# --- units (no network) -------------------------------------------------------------------------------


def test_repo_naming_and_bad_ids():
    from parc.config import compose
    from parc.hub.repo import repo_id_for

    cfg = compose(["experiment=demo", "arch=rwkv", "seed=3", "data.shard=2", "hub.repo_id=org"])
    assert repo_id_for(cfg) == "org/demo-rwkv-seed3-shard2"
    cfg.hub.repo_id = "org/exact.name"
    assert repo_id_for(cfg) == "org/exact.name"
    for bad in ("org/a/b", "org/has space", "org/x--y", "-org/x"):
        cfg.hub.repo_id = bad
        with pytest.raises(ParcError, match="not a valid repo id"):
            repo_id_for(cfg)


def test_secrets_are_found_in_any_published_file(tmp_path):
    from parc.hub.repo import refuse_secrets

    (tmp_path / "config.json").write_text('{"note": "fine"}')
    (tmp_path / "weights.bin").write_bytes(b"\0\1" + TOKEN.encode() + b"\2")
    refuse_secrets(tmp_path, ["config.json"], {"the Hugging Face token": TOKEN})
    with pytest.raises(ParcError, match="refusing to push .*weights.bin: it contains the Hugging Face token") as caught:
        refuse_secrets(tmp_path, ["config.json", "weights.bin"], {"the Hugging Face token": TOKEN})
    assert TOKEN not in str(caught.value)


def test_transient_and_permanent_failures_are_told_apart():
    from parc.hub.repo import RetryPolicy, is_transient

    class Response:
        def __init__(self, status, headers=None):
            self.status_code, self.headers = status, headers or {}

    class HTTPFailure(Exception):
        def __init__(self, status, headers=None):
            super().__init__(f"status {status}")
            self.response = Response(status, headers)

    for status in (429, 500, 502, 503, 504):
        assert is_transient(HTTPFailure(status))
    for status in (400, 401, 403, 404):
        assert not is_transient(HTTPFailure(status))
    wrapped = LookupError("no cached copy")
    wrapped.__cause__ = ConnectionResetError("peer reset")
    assert is_transient(wrapped)

    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise HTTPFailure(503)
        return "ok"

    assert RetryPolicy(0.01, 0.02, 5).call("push", "org/x", flaky) == "ok" and len(calls) == 3
    with pytest.raises(ParcError, match=r"^push: no write access to org/x \(HTTP 403\)"):
        RetryPolicy(0.01, 0.02, 5).call("push", "org/x", lambda: (_ for _ in ()).throw(HTTPFailure(403)))
    with pytest.raises(ParcError, match="still failing after 0 s"):
        RetryPolicy(0.01, 0.02, 0.05).call("push", "org/x", lambda: (_ for _ in ()).throw(HTTPFailure(500)))
