"""`python -m parc.parity`: our trainer matches transformers.Trainer (run as the Parc script ran it) step by step,
for every architecture with accumulation > 1, and the harness does see a real recipe difference."""

from __future__ import annotations

import copy
import re
import shutil

import numpy as np
import pytest

from conftest import run_cli

STEPS = 6
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s", re.M)


def parity(*args):
    result = run_cli("parc.parity", *args)
    return result, result.stdout + result.stderr


def compared_rows(stdout: str) -> list:
    return [(int(s), float(a), float(b), float(d)) for s, a, b, d in ROW.findall(stdout)]


def max_difference(stdout: str) -> float:
    last = stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"max relative loss difference: (\S+)", last)
    assert match, last
    return float(match.group(1))


@pytest.mark.parametrize("arch", ["pythia", *(pytest.param(a, marks=pytest.mark.slow) for a in ("mamba", "rwkv"))])
def test_losses_match_the_hf_trainer(demo_root, arch):  # noqa: F811
    result, printed = parity(f"arch={arch}", f"steps={STEPS}", f"paths.root={demo_root}")
    assert result.returncode == 0, printed[-3000:]
    assert "accumulation 2" in result.stdout  # demo: micro-batch 8 x 2 = global batch 16
    rows = compared_rows(result.stdout)
    assert [r[0] for r in rows] == list(range(1, STEPS + 1))
    for step, ours, reference, diff in rows:
        assert 0 < ours < 20 and 0 < reference < 20, (step, ours, reference)  # real losses on both sides
        assert diff == pytest.approx(abs(ours - reference) / reference, abs=2e-7)
    assert rows[-1][1] < rows[0][1] - 0.2  # both sides actually trained
    assert max_difference(result.stdout) <= 1e-4
    assert "initial weights bit-identical" in result.stdout
    assert "learning rates: identical" in result.stdout
    assert "weight-decay groups: identical" in result.stdout


@pytest.fixture(scope="module")
def eos_root(demo_root, tmp_path_factory):  # noqa: F811
    """The demo stream with 5% of the first steps' tokens set to eos (id 0), as a literal <|endoftext|> would be."""
    root = tmp_path_factory.mktemp("eos")
    shutil.copytree(demo_root / "data", root / "data", ignore=shutil.ignore_patterns("hf-datasets-cache"))
    (path,) = (root / "data").glob("demo-parc-128/parts/*/seq-*.bin")
    tokens = np.memmap(path, dtype=np.uint16, mode="r+").reshape(-1, 128)
    first = tokens[: 16 * STEPS]
    first[np.random.default_rng(0).random(first.shape) < 0.05] = 0
    tokens.flush()
    return root


def test_eos_labels_are_ignored_as_the_scripts_collator_does(eos_root):
    result, printed = parity("arch=pythia", "steps=4", f"paths.root={eos_root}")
    assert result.returncode == 0, printed[-3000:]
    assert max_difference(result.stdout) <= 1e-4


def test_the_harness_sees_a_recipe_difference(eos_root):
    """Ours predicting eos labels (which the script's collator ignores) is caught, well above the tolerance."""
    from parc.config import compose
    from parc.data.prepare import ensure_prepared
    from parc.data.stream import BatchPlan
    from parc.training import parity as harness

    cfg = compose(
        ["experiment=demo", "arch=pythia", f"paths.root={eos_root}", "trainer.max_steps=3", "trainer.warmup_steps=1"]
    )
    stream = ensure_prepared(cfg)
    batches = BatchPlan.from_config(cfg, stream)
    ours_cfg = copy.deepcopy(cfg)
    ours_cfg.trainer.ignore_eos_labels = False
    ours, initial = harness.run_ours(ours_cfg, batches, stream.tokenizer_dir)
    reference = harness.run_reference(cfg, batches, stream.tokenizer_dir, initial, accumulation=2)
    text, worst = harness.report(ours, reference, tolerance=1e-4)
    assert worst > 1e-4 and "EXCEEDS" in text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["steps=0"], "steps must be >= 1"),
        (["steps=ten"], "is not an integer: e.g. steps=50"),
        (["trainer.loss_normalization=hf4"], "compare with trainer.loss_normalization=tokens"),
        (["trainer.weight_decay_rule=hf4.50"], "compare with trainer.weight_decay_rule=transformers"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    result, printed = parity("arch=pythia", f"paths.root={tmp_path}", *args)
    assert result.returncode == 2, printed[-2000:]
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before preparing anything
