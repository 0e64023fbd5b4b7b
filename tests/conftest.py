"""Offline, CPU-only test environment shared by every test module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Set before transformers/huggingface_hub/datasets are imported anywhere in the test process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Keep every HF/wandb cache out of the user's home."""
    cache = tmp_path_factory.getbasetemp() / "caches"
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("WANDB_DIR", str(cache / "wandb"))


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m <args>` as a user would; returns the CompletedProcess."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CASES_DRIVER = """
import contextlib, io, json, runpy, sys, traceback
results = []
for module, *argv in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [module, *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # as the interpreter would: a traceback and exit 1 (the test then shows it)
            traceback.print_exc()
            code = 1
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_cli_cases(module, cases, cwd=None, timeout=600, env=None, python=None) -> list:
    """`python -m <module> <argv>` for each argv of `cases`, in turn in one interpreter (each as runpy runs
    `-m`, with its own sys.argv, stdout and stderr): for many quick commands, whose cost is the imports.
    module=None: each case is [module, *argv]; env: variables added to this one's, as run_cli; python: the
    interpreter (default this one's, e.g. another virtual environment's). Returns one
    SimpleNamespace(returncode, stdout, stderr) per case."""
    import json
    import subprocess
    from types import SimpleNamespace

    commands = [list(c) if module is None else [module, *c] for c in cases]
    result = subprocess.run(
        [str(python or sys.executable), "-c", CASES_DRIVER, json.dumps(commands)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [SimpleNamespace(**case) for case in json.loads(result.stdout.strip().splitlines()[-1])]


def shared_base(tmp_path_factory) -> Path:
    """The session's temporary root that every xdist worker sees (pytest-N/, not the worker's pytest-N/popen-gwK)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(directory: Path, build) -> Path:
    """`build(directory)` once per test session, shared by every xdist worker: the first worker that needs it
    builds it under a file lock, the others wait for it and reuse it (a half-built one is rebuilt). Tests
    must treat it as read-only (copy what they change) and write their outputs under their own tmp_path."""
    import shutil

    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        if not (directory / ".complete").is_file():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            build(directory)
            (directory / ".complete").touch()
    return directory


def prepare_demo(root: Path) -> None:
    result = run_cli("parc.prepare", "experiment=demo", f"paths.root={root}")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A root whose data/ holds the prepared demo stream (prepared once per session, by the real CLI)."""
    return build_once(shared_base(tmp_path_factory) / "parc", prepare_demo)


def short_run(root, out, *extra, steps=8, every=4):
    return [
        "experiment=demo",
        f"paths.root={root}",
        f"output_dir={out}",
        f"trainer.max_steps={steps}",
        f"checkpoint.every={every}",
        "trainer.progress=false",
        *extra,
    ]


def train(*overrides, expect=0):
    result = run_cli("parc.train", *overrides)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def eval_grid(demo_root):
    """A small demo grid under <demo_root>/runs/demo for the study layer: pythia seeds 0 and 1, mamba seed 0,
    8 steps each with checkpoints 0, 4, 8 (trained once per session by the real CLI, shared by every worker)."""
    import json
    import subprocess

    def build(grid: Path) -> None:
        runs = [
            short_run(demo_root, grid / f"{arch}-seed{seed}-shard0", f"arch={arch}", f"seed={seed}")
            for arch, seed in (("pythia", 0), ("pythia", 1), ("mamba", 0))
        ]
        # One interpreter trains all three (parc.train's own entry, in turn): imports dominate a tiny run.
        script = (
            "import json, sys\nfrom parc.config import compose\nfrom parc.train import run\n"
            "for overrides in json.loads(sys.argv[1]):\n    run(compose(overrides))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(runs)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    return build_once(demo_root / "runs" / "demo", build)
