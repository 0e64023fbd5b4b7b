"""The one command grammar (parc.cli.grammar) against hand-written expectations, every face's `--help`, and the
old forms the README showed, which still work for one release with one deprecation notice each."""

from __future__ import annotations

from pathlib import Path

import pytest

from parc.cli import INTS, REQUIRED, STRS, Command, Key, Paths, parse_ints
from parc.errors import ParcError

from conftest import run_cli_cases

FACES = [
    "parc.batch",
    "parc.card",
    "parc.compare",
    "parc.dynamics",
    "parc.evaluate",
    "parc.export",
    "parc.grid",
    "parc.ngrams",
    "parc.parity",
    "parc.phases",
    "parc.plot",
    "parc.prepare",
    "parc.revisions",
    "parc.stimuli",
    "parc.study",
    "parc.surprisal",
    "parc.sync",
    "parc.verify",
]

SPEC = Command(
    "parc.demo",
    "`python -m parc.demo <path> [key=value ...]`: a test command.",
    paths=Paths("path", 1, 2),
    example="python -m parc.demo runs/x seeds=0-2",
    keys=(
        Key("seeds", INTS, [0]),
        Key("archs", STRS, ["pythia"], choices=("pythia", "mamba", "rwkv")),
        Key("json", bool, False),
        Key("k", float, 6.0),
        Key("steps", INTS, None),
        Key("metric", str, REQUIRED),
        Key("out", Path, None),
        Key("a", STRS, None),
    ),
    deprecated={"--json": "json", "--seeds": "seeds", "--out": "out", "--a": "a", "old.k": "k"},
)


def test_integer_lists_and_ranges():
    assert parse_ints("seeds", "0,1,2") == [0, 1, 2]
    assert parse_ints("seeds", "0-5") == [0, 1, 2, 3, 4, 5]
    assert parse_ints("seeds", "0-2,5") == [0, 1, 2, 5]
    assert parse_ints("seeds", "[3, 1]") == [3, 1]  # brackets tolerated, order kept
    assert parse_ints("steps", "7-7") == [7]
    for bad, words in (
        ("5-2", "runs backwards"),
        ("a", "integers or ranges"),
        ("1-x", "integers or ranges"),
        ("", "is empty"),
        ("[]", "is empty"),
    ):
        with pytest.raises(ParcError, match=words):
            parse_ints("seeds", bad)


def test_a_command_line_becomes_typed_values():
    parsed = SPEC.parse(
        ["runs/x", "metric=loss", "seeds=0-2,5", "archs=[mamba,rwkv]", "json=TRUE", "k=2.5", "out=figs", "runs/y"]
    )
    assert parsed.paths == [Path("runs/x"), Path("runs/y")]
    assert parsed.values == {
        "seeds": [0, 1, 2, 5],
        "archs": ["mamba", "rwkv"],
        "json": True,
        "k": 2.5,
        "steps": None,
        "metric": "loss",
        "out": Path("figs"),
        "a": None,
    }
    assert parsed.json is True and parsed.overrides == [] and parsed.subcommand == ""
    defaults = SPEC.parse(["p", "metric=m", "steps=all", "out="])
    assert defaults.seeds == [0] and defaults.archs == ["pythia"] and defaults.steps is None and defaults.out is None
    assert SPEC.parse(["p", "metric=m"]).seeds is not SPEC.parse(["p", "metric=m"]).seeds  # defaults never shared


@pytest.mark.parametrize(
    "argv, words",
    [
        (["p", "metric=m", "json=yes"], "json='yes': use json=true or json=false"),
        (["p", "metric=m", "k=much"], "k='much' is not a number"),
        (["p", "metric=m", "seeds=5-2"], "runs backwards"),
        (["p", "metric=m", "archs=gpt"], "gpt is not one of pythia, mamba, rwkv"),
        (["p", "metric=m", "colour=red"], "unknown argument 'colour=red': parc.demo takes seeds=, archs="),
        (["p", "metric=m", "--colour"], "unknown option '--colour'"),
        (["p"], "metric= is required"),
        (["p", "metric="], "metric= is empty"),
        (["metric=m"], "needs <path>"),
        (["p", "q", "r", "metric=m"], "unexpected argument 'r'"),
        (["p", "metric=m", "json=true", "json=false"], "json= is given twice"),
        (["p", "metric=m", "--out"], "--out needs a value"),
    ],
)
def test_mistakes_are_one_line_errors_naming_the_key(argv, words):
    with pytest.raises(ParcError) as caught:
        SPEC.parse(argv)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    if "unknown" in words or "required" in words:
        assert "e.g. python -m parc.demo runs/x seeds=0-2" in str(caught.value)


def test_old_forms_parse_the_same_with_one_notice_each(capsys):
    new = SPEC.parse(["p", "metric=m", "json=true", "seeds=0-1", "out=o", "a=arch=x,step=1", "k=2"])
    capsys.readouterr()
    old = SPEC.parse(
        ["p", "metric=m", "--json", "--seeds", "0-1", "--out=o", "--a", "arch=x", "--a", "step=1", "old.k=2"]
    )
    assert old.values == {**new.values, "a": ["arch=x", "step=1"]} and new.a == ["arch=x", "step=1"]
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        "note: --json is deprecated; use json=true (the old form goes in the next release)",
        "note: --seeds is deprecated; use seeds=0-1 (the old form goes in the next release)",
        "note: --out is deprecated; use out=o (the old form goes in the next release)",
        "note: --a is deprecated; use a=arch=x (the old form goes in the next release)",
        "note: --a is deprecated; use a=step=1 (the old form goes in the next release)",
        "note: old.k= is deprecated; use k=2 (the old form goes in the next release)",
    ]
    with pytest.raises(ParcError, match="--json takes no value: write json=true"):
        SPEC.parse(["p", "metric=m", "--json=1"])


def test_overrides_pass_through_and_subcommands_come_first():
    spec = Command(
        "parc.tool",
        subcommands=(
            Command("status", overrides=True, keys=(Key("seeds", INTS, [0]),)),
            Command("show", paths=Paths("dir")),
        ),
        example="python -m parc.tool status seeds=0-2",
    )
    parsed = spec.parse(["status", "experiment=demo", "seeds=0-2", "+trainer.extra=1", "~logger", "hub.branch=step{N}"])
    assert (parsed.subcommand, parsed.seeds) == ("status", [0, 1, 2])
    assert parsed.overrides == ["experiment=demo", "+trainer.extra=1", "~logger", "hub.branch=step{N}"]
    assert spec.parse(["show", "runs/a=b"]).paths == [Path("runs/a=b")]  # "runs/a" is no key name: a path
    for argv, words in (
        ([], "give a subcommand first, one of status, show"),
        (["stat"], "'stat' is not a subcommand"),
        (["show", "x=1"], "unknown argument 'x=1': parc.tool show takes no key=value arguments"),
        (["status", "trainer.max_steps"], "unexpected argument 'trainer.max_steps'"),
    ):
        with pytest.raises(ParcError, match=words):
            spec.parse(argv)


def test_help_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        SPEC.parse(["metric=m", "-h"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("`python -m parc.demo <path>")
    assert "usage: python -m parc.demo <path>... [key=value ...]" in text and "  metric=TEXT" in text
    assert "seeds=N,N-M" in text and "default 0" in text and "--json -> json=" in text


def test_every_face_answers_help():
    results = run_cli_cases(None, [[face, "--help"] for face in FACES] + [[face, "-h"] for face in FACES[:3]])
    for face, result in zip(FACES + FACES[:3], results):
        assert result.returncode == 0, (face, result.stderr[-2000:])
        assert f"parc.{face.split('.')[1]}" in result.stdout and "usage: python -m" in result.stdout, face
        assert result.stderr == "", (face, result.stderr)


def test_the_readme_old_forms_still_work_with_a_notice(tmp_path):
    """The argparse flags the README showed: the same answer as the new form, plus one `note:` line."""
    missing = str(tmp_path / "nothing")
    cases = [
        (["parc.verify", missing, "--json"], ["parc.verify", missing, "json=true"], "--json", "json=true"),
        (
            ["parc.verify", missing, "--size-only"],
            ["parc.verify", missing, "size_only=true"],
            "--size-only",
            "size_only=true",
        ),
        (["parc.sync", missing, "--dry-run"], ["parc.sync", missing, "dry_run=true"], "--dry-run", "dry_run=true"),
        (
            ["parc.grid", "status", "--root", missing, "--seeds", "0-1", "--json"],
            ["parc.grid", "status", f"root={missing}", "seeds=0-1", "json=true"],
            "--seeds",
            "seeds=0-1",
        ),
        (
            ["parc.plot", missing, "--out", str(tmp_path / "x.png")],
            ["parc.plot", missing, f"out={tmp_path / 'x.png'}"],
            "--out",
            "out=",
        ),
        (
            ["parc.plot", "evals", missing, "--band", "iqr", "--x", "tokens"],
            ["parc.plot", "evals", missing, "band=iqr", "x=tokens"],
            "--band",
            "band=iqr",
        ),
        (
            ["parc.compare", missing, "--metric", "loss", "--a", "arch=pythia", "--b", "arch=mamba", "--step", "4"],
            ["parc.compare", missing, "metric=loss", "a=arch=pythia", "b=arch=mamba", "step=4"],
            "--metric",
            "metric=loss",
        ),
        (
            ["parc.export", "rwkv", missing, str(tmp_path / "o.pth"), "--dtype", "fp16"],
            ["parc.export", "rwkv", missing, str(tmp_path / "o.pth"), "dtype=fp16"],
            "--dtype",
            "dtype=fp16",
        ),
        (
            ["parc.revisions", "--audit", "--grid", missing],
            ["parc.revisions", "audit=true", f"grid={missing}"],
            "--audit",
            "audit=true",
        ),
        (
            ["parc.phases", f"out={missing}", f"phases.vectors={missing}"],
            ["parc.phases", f"out={missing}", f"vectors={missing}"],
            "phases.vectors=",
            "vectors=",
        ),
    ]
    results = run_cli_cases(None, [c for old, new, _, _ in cases for c in (old, new)])
    for (old_args, _, flag, new_form), old, new in zip(cases, results[::2], results[1::2]):
        notes = [line for line in old.stderr.splitlines() if line.startswith("note: ")]
        assert any(n.startswith(f"note: {flag} is deprecated; use {new_form}") for n in notes), (old_args, old.stderr)
        assert all(n.endswith("(the old form goes in the next release)") for n in notes)
        assert not any(line.startswith("note: ") for line in new.stderr.splitlines()), new.stderr
        rest = [line for line in old.stderr.splitlines() if not line.startswith("note: ")]
        assert (old.returncode, old.stdout, rest) == (new.returncode, new.stdout, new.stderr.splitlines()), old_args
        assert not (tmp_path / "nothing").exists()


def test_study_and_grid_take_seed_ranges(tmp_path):
    """`seeds=0-5` (refused by parc.study before) reaches the command in both; 0-2,5 means 0, 1, 2, 5."""
    import json

    grid, study = run_cli_cases(
        None,
        [
            [
                "parc.grid",
                "status",
                "experiment=demo",
                f"paths.root={tmp_path}",
                "seeds=0-2,5",
                "archs=rwkv",
                "json=true",
            ],
            ["parc.study", "experiment=demo", f"paths.root={tmp_path}", "seeds=0-5", "archs=gpt"],
        ],
    )
    assert grid.returncode == 0, grid.stderr
    assert [cell["seed"] for cell in json.loads(grid.stdout)["cells"]] == [0, 1, 2, 5]
    assert study.returncode == 2 and study.stderr.startswith("error: archs= names 'gpt'"), study.stderr  # seeds read
