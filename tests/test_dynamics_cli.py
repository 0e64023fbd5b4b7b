"""`python -m parc.dynamics`: bad input is a one-line `error: ...`, exit 2, nothing written; the same tables give
byte-identical outputs (determinism)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give a subcommand first"),
        (["nonsense"], "'nonsense' is not a subcommand"),
        (["noise"], "evals= is required for parc.dynamics noise"),
        (["noise", "evals=/nonexistent-evals"], "no results.parquet"),
        (["noise", "evals=.", "bogus=1"], "unknown argument 'bogus=1': parc.dynamics noise takes"),
        (["similarity"], "runs= is required for parc.dynamics similarity"),
        (["similarity", "runs=/nonexistent-run"], "no such directory"),
        (["similarity", "runs=.", "pairs=layers"], "layers is not one of steps, seeds, archs"),
        (["similarity", "runs=.", "layers=some"], "some is not one of diagonal, all"),
        (["similarity", "runs=.", "sequences=2"], "at least 4"),
        (["diffs"], "runs= is required for parc.dynamics diffs"),
        (["diffs", "runs=/nonexistent-run"], "no such directory"),
        (["diffs", "runs=.", "tolerance=x"], "is not a number"),
        (["outliers", "runs=/nonexistent-grid"], "no metrics.jsonl"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys, monkeypatch):
    from parc.dynamics import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(args)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1, error
    assert message in error, error
    assert not any(tmp_path.iterdir())  # nothing written


def test_noise_outputs_are_byte_identical_on_rerun(tmp_path):
    rng = np.random.default_rng(0)
    rows, examples = [], []
    for arch, shift in (("pythia", 0.0), ("mamba", 0.3)):
        for seed in range(4):
            for step in (0, 10, 20, 30):
                losses = 5 - 0.01 * step + shift + rng.normal(0, 0.05) + rng.normal(0, 0.5, 40)
                identity = {
                    "arch": arch,
                    "size": "tiny",
                    "seed": seed,
                    "shard": 0,
                    "data_seed": 0,
                    "step": step,
                    "source": f"/r/{arch}-seed{seed}",
                    "evaluation": "heldout",
                    "task": "t",
                }
                rows.append({**identity, "metric": "loss", "value": losses.mean(), "stderr": 0.01})
                examples.append(pd.DataFrame({**identity, "example_id": np.arange(40), "loss": losses}))
    evals = tmp_path / "evals"
    (evals / "examples").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(evals / "results.parquet")
    pd.concat(examples).to_parquet(evals / "examples" / "heldout.parquet")
    outputs = []
    for name in ("a", "b"):
        done = run_cli("parc.dynamics", "noise", f"evals={evals}", f"out={tmp_path / name}")
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert outputs[0] == outputs[1] and {"noise.parquet", "noise-pairs.parquet", "noise.png", "noise-mde.pdf"} <= set(
        outputs[0]
    )
    pairs = pd.read_parquet(tmp_path / "a" / "noise-pairs.parquet")
    assert set(zip(pairs["arch_a"], pairs["arch_b"])) == {("mamba", "pythia")} and (pairs["mde"] > 0).all()
    assert pairs["difference"].to_numpy() == pytest.approx(-0.3, abs=0.25)  # pythia - mamba, 4 noisy seeds each
