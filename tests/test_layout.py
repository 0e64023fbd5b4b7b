"""The layout stays a set of layers: command faces on top, one package per concern, no import circles.

Imports are read with `ast` from every file under src/parc (also those inside functions: a lazy import is
still a dependency), so nothing is executed. Ranks: a package may import only packages of a lower rank or
its own modules; modules never import each other in a circle; a command face (a module directly under
src/parc) imports a package only through the names in its `__all__`.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PARC = SRC / "parc"
SHARED_PACKAGES = {"cli"}  # packages of the shared bottom: parc.cli (the command grammar)
SHARED = {"parc", "parc.errors", "parc.config"} | {  # the bottom every layer may use
    f"parc.{package}" + ("" if p.stem == "__init__" else f".{p.stem}")
    for package in SHARED_PACKAGES
    for p in (Path(__file__).resolve().parents[1] / "src" / "parc" / package).glob("*.py")
}
RANKS = {"store": 1, "kernels": 2, "archs": 3, "data": 3, "hub": 4, "training": 5, "study": 6}
FACE_RANK = 7


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PARC.rglob("*.py"))}


def imports_of(path: Path, known: Set[str]) -> List[Tuple[str, List[str], int]]:
    """(imported parc module, the names taken from it, line) for every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "parc"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "parc":
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found += [(s, [], node.lineno) for s in submodules]
            found.append((target, [n for n in names if f"{target}.{n}" not in known], node.lineno))
    return found


def concern(name: str) -> str:
    """The package a module belongs to ('parc.study.evaluations.heldout' -> 'study'); '' for the shared
    bottom; the module's own name for a command face."""
    if name in SHARED:
        return ""
    parts = name.split(".")
    return parts[1]


def rank(name: str) -> int:
    if name in SHARED:
        return 0
    return RANKS.get(concern(name), FACE_RANK)


def is_face(name: str) -> bool:
    return name.count(".") == 1 and name not in SHARED and concern(name) not in RANKS


def graph() -> Dict[str, Set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {t for t, _, _ in imports_of(path, known) if t in known and t != name} for name, path in mods.items()}


def test_every_package_is_a_ranked_concern():
    packages = {p.parent.name for p in PARC.glob("*/__init__.py")} - SHARED_PACKAGES
    assert packages == set(RANKS), f"new or missing package: give it a rank in RANKS ({packages ^ set(RANKS)})"


def test_the_grammar_imports_only_errors_and_the_standard_library():
    """parc.cli sits below config (which needs Hydra): a face's --help never pays for more than Python itself."""
    import sys

    wrong = []
    for path in sorted((PARC / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            )
            for name in names:
                top = name.split(".")[0]
                if (
                    name != "parc.errors"
                    and not name.startswith("parc.cli")
                    and top not in sys.stdlib_module_names
                    and top != "__future__"
                ):
                    wrong.append(f"{module_name(path)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_packages_import_only_lower_layers():
    wrong = []
    for name, targets in graph().items():
        if is_face(name):
            continue
        for target in targets:
            if concern(target) != concern(name) and rank(target) >= rank(name):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "upward or sideways imports between packages:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    from graphlib import CycleError, TopologicalSorter

    try:  # each module after the modules it imports: impossible exactly when imports go in a circle
        TopologicalSorter(graph()).prepare()
    except CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_faces_use_only_public_names():
    mods = modules()
    known = set(mods)
    wrong = []
    for name, path in mods.items():
        if not is_face(name):
            continue
        for target, names, line in imports_of(path, known):
            if target in SHARED or target not in known:
                continue
            package = f"parc.{concern(target)}"
            if target != package:
                wrong.append(f"{name}:{line} imports {target}: use `from {package} import ...`")
                continue
            public = set(importlib.import_module(package).__all__)
            wrong += [f"{name}:{line} takes {n} from {package}, not in its __all__" for n in names if n not in public]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(RANKS))
def test_public_names_resolve(package):
    """Every name a package lists in __all__ is there when asked for (the lazy exports point at real code)."""
    module = importlib.import_module(f"parc.{package}")
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) >= 2, f"parc.{package} needs its docstring"
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_faces_are_thin_commands():
    long = []
    for name, path in modules().items():
        if not is_face(name):
            continue
        text = path.read_text()
        first = ast.parse(text).body[0]
        docstring_end = first.end_lineno if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else 0
        lines = len(text.splitlines()) - docstring_end  # its code, as `ruff format` lays it out at 120 columns
        if lines > 60 or 'if __name__ == "__main__":' not in text or not text.lstrip().startswith('"""'):
            long.append(f"{name}: {lines} lines")
    assert not long, (
        "a command face is a docstring, argument parsing and one call into a package (<= 60 lines after its docstring):\n"
        + "\n".join(long)
    )


@pytest.mark.parametrize("package", sorted(RANKS))
def test_public_names_are_not_submodule_names(package):
    """An imported submodule becomes an attribute of its package and would shadow a public name like it."""
    module = importlib.import_module(f"parc.{package}")
    submodules = {p.stem for p in (PARC / package).glob("*.py")} | {
        p.parent.name for p in (PARC / package).glob("*/__init__.py")
    }
    assert not set(module.__all__) & submodules


# Inside the study layer: the root's shared modules (results, stats, plots) at the bottom, then sources/, then
# evaluations/, phases/ and memorization/ side by side, then dynamics/; the package's own faces (__init__, __main__) on top.
STUDY_RANKS = {"": 0, "sources": 1, "evaluations": 2, "phases": 2, "memorization": 2, "dynamics": 3}
STUDY_FACES = {"parc.study", "parc.study.__main__"}


def study_folder(name: str) -> str:
    """'parc.study.phases.ngrams' -> 'phases'; a module at the study root -> ''."""
    parts = name.split(".")
    return parts[2] if len(parts) > 3 else ""


def test_study_folders_are_ranked_and_documented():
    folders = {p.parent.name for p in (PARC / "study").glob("*/__init__.py")}
    assert folders == set(STUDY_RANKS) - {""}, f"new or missing study folder: rank it in STUDY_RANKS ({folders})"
    for folder in folders:
        doc = importlib.import_module(f"parc.study.{folder}").__doc__
        assert doc and len(doc.strip().splitlines()) >= 2, f"parc.study.{folder} needs a docstring saying what it owns"
    loose = sorted(p.stem for p in (PARC / "study").glob("*.py"))
    assert set(loose) <= {"__init__", "__main__", "results", "stats", "plots"}, (
        f"study root holds only shared modules: {loose}"
    )


def test_study_folders_import_only_lower_folders():
    wrong = []
    for name, targets in graph().items():
        if concern(name) != "study" or name in STUDY_FACES:
            continue
        for target in targets:
            if concern(target) != "study" or target in STUDY_FACES or study_folder(target) == study_folder(name):
                continue
            if STUDY_RANKS[study_folder(target)] >= STUDY_RANKS[study_folder(name)]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "upward or sideways imports between study folders:\n" + "\n".join(sorted(wrong))


# Commands parse, packages take typed arguments. Under every package but parc.cli (the one parser), a function
# parameter is refused when it is (1) named `argv` or `own`, whatever its annotation; (2) named `args` or
# `arguments` and annotated as a list/sequence of str; (3) annotated as a str -> str dict (Dict, dict, Mapping;
# Optional or not), unless its name is one of DATA_DICTS, dicts that hold data rather than a command's arguments.
# Hydra overrides (`overrides: List[str]`) are the config's own language, composed by parc.config.compose: allowed.
DATA_DICTS = {
    "secrets": "environment variable -> secret value, kept out of pushed files",
    "shas": "file -> sha256",
    "branches": "Hub branch -> commit",
    "key_map": "state-dict key renames",
    "filters": "table column -> wanted value (parc.compare's selections)",
    "a_filters": "as filters",
    "b_filters": "as filters",
    "panel_titles": "figure panel -> title",
    "named": "the groups a run name's pattern matched (arch, seed, step, ...)",
}
STR_LISTS = re.compile(r"^(Optional\[)?(typing\.)?(List|list|Sequence|Iterable)\[str\]\]?$")
STR_DICTS = re.compile(r"^(Optional\[)?(typing\.)?(Dict|dict|Mapping)\[str,str\]\]?$")


def raw_argument_parameters(source: str, where: str) -> List[str]:
    """'<where>:<line> <function>(<parameter>)' for every parameter the rule above refuses."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        arguments = node.args
        for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
            if arg is None:
                continue
            annotation = ast.unparse(arg.annotation).replace(" ", "") if arg.annotation is not None else ""
            if (
                arg.arg in ("argv", "own")
                or (arg.arg in ("args", "arguments") and STR_LISTS.match(annotation))
                or (STR_DICTS.match(annotation) and arg.arg not in DATA_DICTS)
            ):
                found.append(f"{where}:{node.lineno} {node.name}({arg.arg}: {annotation or 'unannotated'})")
    return found


def test_the_signature_rule_catches_raw_arguments():
    """The rule on hand-written functions: what it must refuse, and what it must let through."""
    refused = raw_argument_parameters(
        "def a(argv): ...\ndef b(own): ...\ndef c(args: List[str]): ...\ndef d(options: Dict[str, str]): ...\n"
        "def e(x: Optional[Mapping[str, str]] = None): ...\ndef f(arguments: typing.Sequence[str]): ...",
        "x",
    )
    assert [line.split()[1].partition("(")[0] for line in refused] == ["a", "b", "c", "d", "e", "f"]
    assert (
        raw_argument_parameters(
            "def g(overrides: List[str], filters: Dict[str, str], steps: List[int], names: List[str], args=None): ...",
            "x",
        )
        == []
    )


def test_package_functions_take_typed_arguments():
    wrong = []
    for path in sorted(PARC.rglob("*.py")):
        name = module_name(path)
        if is_face(name) or path.stem == "__main__" or name in SHARED or concern(name) not in RANKS:
            continue  # faces (parc.<command>, parc.study's __main__) and parc.cli read argv: that is their job
        wrong += raw_argument_parameters(path.read_text(), str(path.relative_to(SRC)))
    assert not wrong, "a command parses its arguments; a package function takes them typed:\n" + "\n".join(wrong)


EXIT_CALLS = {"sys.exit", "exit", "quit", "os._exit", "SystemExit"}


def exit_code_literals(source: str, label: str) -> List[str]:
    """Where a module exits with a number, names an exit code of its own, or compares a child's return code
    with a number (other than 0): every exit status is a name in parc.errors."""
    found = []
    for node in ast.walk(ast.parse(source, label)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in EXIT_CALLS:
            found += [
                f"{ast.unparse(node)}"
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, int)
            ]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{ast.unparse(t)} = ..." for t in targets if ast.unparse(t).startswith("EXIT_")]
        elif isinstance(node, ast.Compare) and "returncode" in ast.unparse(node):
            found += [
                ast.unparse(node)
                for c in [node.left, *node.comparators]
                if isinstance(c, ast.Constant) and isinstance(c.value, int) and c.value != 0
            ]
    return [f"{label}: {hit}" for hit in found]


def test_exit_codes_are_named_in_errors():
    found = [
        hit
        for name, path in modules().items()
        if name != "parc.errors"
        for hit in exit_code_literals(path.read_text(), str(path.relative_to(SRC)))
    ]
    assert not found, "use the EXIT_* names of parc.errors:\n" + "\n".join(found)
    probe = (
        "import sys\nEXIT_MINE = 3\nif run().returncode == 75:\n    sys.exit(1)\nsys.exit(EXIT_USER_ERROR)\n"
        "if run().returncode:\n    raise SystemExit(2)\n"
    )
    assert exit_code_literals(probe, "probe") == [
        "probe: EXIT_MINE = ...",
        "probe: run().returncode == 75",
        "probe: sys.exit(1)",
        "probe: SystemExit(2)",
    ]
