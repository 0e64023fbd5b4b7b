"""A normal (non-editable) install works: the wheel carries the configs, and from a directory outside the checkout
every README command answers `--help`, the demo's dry run prints its plan, and the `parc` command runs them.

The wheel is built from a clean copy of the checkout and installed into a fresh virtual environment without
downloading anything: its dependencies come from this interpreter's site-packages through a `.pth` line (a plain
path line: the editable install's finder there is not run, so `parc` is the wheel's).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, run_cli_cases

README_COMMANDS = sorted(set(re.findall(r"python -m parc\.(\w+)", (REPO / "README.md").read_text())))
NO_PYTHONPATH = {"PYTHONPATH": ""}  # the test run's PYTHONPATH may point at the checkout's src/


def check(command, **kwargs) -> SimpleNamespace:
    """Run a command that must succeed; its stdout."""
    code, stdout, stderr = outcome(command, **kwargs)
    assert code == 0, f"{command}: {stderr[-3000:]}"
    return SimpleNamespace(stdout=stdout)


def environment() -> dict:
    return {**os.environ, **NO_PYTHONPATH}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a clean copy: no build/ or egg-info of earlier builds in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    check(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            base / "dist",
            source,
        ]
    )
    (wheel,) = (base / "dist").glob("parc-*.whl")
    venv = base / "venv"
    check([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # Installed before the .pth exists: pip then sees only the new environment (never the editable parc).
    check(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        env=environment(),
    )
    site = check([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    outer = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "parc_test_dependencies.pth").write_text("\n".join(outer) + "\n")
    return SimpleNamespace(wheel=wheel, python=python, parc=venv / "bin" / "parc", site=Path(site))


@pytest.fixture(scope="module")
def outside(installed, tmp_path_factory) -> dict:
    """From a directory outside the checkout, in one interpreter of the new environment: every README command's
    `--help` and the demo's dry run; {case name: result}."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    cases = {"dry run": ["parc.train", "experiment=demo", "dry_run=true"]}
    cases.update({name: [f"parc.{name}", "--help"] for name in README_COMMANDS})
    results = run_cli_cases(None, list(cases.values()), cwd=cwd, env=NO_PYTHONPATH, python=installed.python)
    return {**dict(zip(cases, results)), "written": sorted(p.name for p in cwd.iterdir())}


def test_readme_names_every_command():
    assert len(README_COMMANDS) >= 18 and {"train", "prepare", "verify", "study", "dynamics"} <= set(README_COMMANDS)


def test_the_wheel_holds_every_config_and_the_demo_corpora(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    package = REPO / "src" / "parc"
    shipped = [p for p in (package / "configs").rglob("*") if p.is_file()] + list((package / "demo_corpus").iterdir())
    assert len(shipped) > 20
    missing = [str(p.relative_to(package)) for p in shipped if f"parc/{p.relative_to(package).as_posix()}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert (
        "parc = parc.__main__:main"
        in zipfile.ZipFile(installed.wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )


def test_parc_comes_from_the_wheel_not_the_checkout(installed, tmp_path):
    script = "import parc, parc.config; print(parc.__file__); print(parc.config.CONFIG_DIR)"
    module, configs = check([installed.python, "-c", script], cwd=tmp_path, env=environment()).stdout.split()
    assert Path(module).is_relative_to(installed.site) and not Path(module).is_relative_to(REPO)
    assert Path(configs) == installed.site / "parc" / "configs" and (Path(configs) / "train.yaml").is_file()


def test_the_demo_dry_run_works_from_an_installed_wheel(outside):
    result = outside["dry run"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parc dry run: nothing trained, nothing written" in result.stdout
    assert re.search(r"architecture +pythia \(tiny\)", result.stdout) and "demo-parc-128" in result.stdout
    assert outside["written"] == []


def test_every_readme_command_answers_help_from_an_installed_wheel(outside):
    """Exit 0 and a usage text (train's is Hydra's, listing the config groups it found in the installed package)."""
    answered = {
        name
        for name in README_COMMANDS
        if outside[name].returncode == 0 and re.search(r"usage|configuration groups", outside[name].stdout, re.I)
    }
    failed = {
        name: (outside[name].stderr.strip().splitlines() or [""])[-1][:200]
        for name in README_COMMANDS
        if name not in answered
    }
    assert not failed, f"--help failed: {failed}"


def parc_rows(text: str) -> dict:
    return dict(re.findall(r"^  (\w+) +(.+)$", text, flags=re.M))


def test_parc_help_lists_every_command_with_its_purpose_and_no_torch(installed, tmp_path):
    probe = (
        "import json, runpy, sys\nsys.argv = ['parc', '--help']\nrunpy.run_module('parc', run_name='__main__')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'hydra'})))"
    )
    lines = check([installed.python, "-c", probe], cwd=tmp_path, env=environment()).stdout.splitlines()
    assert json.loads(lines[-1]) == [], "parc --help imported heavy packages"
    usage = "\n".join(lines[:-1]) + "\n"
    for argv in (["--help"], [], ["help"], ["-h"]):  # the console script, as a user calls it
        assert check([installed.parc, *argv], cwd=tmp_path, env=environment()).stdout == usage, argv
    rows = parc_rows(usage)
    assert sorted(rows) == README_COMMANDS
    for name, purpose in rows.items():  # each purpose is words of the command's own docstring
        path = REPO / "src" / "parc" / name / "__main__.py" if name == "study" else REPO / "src" / "parc" / f"{name}.py"
        doc = " ".join(ast.get_docstring(ast.parse(path.read_text())).split()).lower()
        words = purpose.removesuffix(" ...").lower()
        assert len(words) > 8 and "python -m" not in words and words in doc, (name, purpose)


def outcome(command, **kwargs) -> tuple:
    """(exit code, stdout, stderr) of a command."""
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, **kwargs
    )
    return result.returncode, result.stdout, result.stderr


def damaged_run(root: Path) -> Path:
    """A run whose checkpoint-4 lists a file that is not there, and whose checkpoint-8 has a truncated one."""
    for step, size in ((4, None), (8, 3)):
        directory = root / "run" / f"checkpoint-{step}"
        directory.mkdir(parents=True)
        (directory / "parc_checkpoint.json").write_text(
            json.dumps({"step": step, "files": {"model.safetensors": {"size": 10, "sha256": "0" * 64}}})
        )
        if size:
            (directory / "model.safetensors").write_bytes(b"x" * size)
    return root / "run"


@pytest.mark.parametrize("where", ["checkout", "wheel"])
def test_parc_command_is_python_m_parc_command(installed, tmp_path, where):
    """Same exit code, stdout and stderr; the checkout's through `python -m parc`, the wheel's through the script."""
    python = sys.executable if where == "checkout" else installed.python
    parc = [python, "-m", "parc"] if where == "checkout" else [installed.parc]
    env = None if where == "checkout" else environment()
    run = damaged_run(tmp_path)
    cases = [
        (["verify", run], ["parc.verify", run], 1, "model.safetensors is missing"),
        (["help", "verify"], ["parc.verify", "--help"], 0, "usage: python -m parc.verify"),
        (["study", "--help"], ["parc.study", "--help"], None, ""),
    ]  # a package's __main__ (what it says: its own)
    if where == "wheel":  # each verify imports torch (seconds): the bad path once
        cases.append((["verify", tmp_path / "nothing"], ["parc.verify", tmp_path / "nothing"], 2, "does not exist"))
    for argv, module, code, text in cases:
        via_parc = outcome([*parc, *argv], cwd=tmp_path, env=env)
        assert via_parc == outcome([python, "-m", *module], cwd=tmp_path, env=env), argv
        assert code is None or via_parc[0] == code and text in via_parc[1] + via_parc[2], argv


def test_an_unknown_command_names_the_closest_one(installed, tmp_path):
    for parc in ([sys.executable, "-m", "parc"], [installed.parc]):
        result = subprocess.run(
            [*parc, "verfy", "runs/demo"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environment() if parc == [installed.parc] else None,
        )
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: unknown command 'verfy'")
        assert "'verify'" in result.stderr and "parc --help" in result.stderr
