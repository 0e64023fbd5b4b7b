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
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A root whose data/ holds the prepared demo stream (prepared once, by the real CLI)."""
    root = tmp_path_factory.mktemp("parc")
    result = run_cli("parc.prepare", "experiment=demo", f"paths.root={root}")
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def short_run(root, out, *extra, steps=8, every=4):
    return ["experiment=demo", f"paths.root={root}", f"output_dir={out}", f"trainer.max_steps={steps}",
            f"checkpoint.every={every}", "trainer.progress=false", *extra]


def train(*overrides, expect=0):
    result = run_cli("parc.train", *overrides)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result
