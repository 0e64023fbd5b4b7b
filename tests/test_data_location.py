"""A run trained in one directory with its output_dir elsewhere (data on /data, runs on /scratch, evaluation
from a login node): every reader of its data finds the prepared stream from the run's own record, from any
current directory; when the recorded path is gone it falls back to the stream beside the runs; a stream
with another fingerprint is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from parc.study.phases.stimuli import Stimulus, write_stimuli

from conftest import run_cli, run_cli_cases


@pytest.fixture(scope="module")
def far_run(demo_root, tmp_path_factory):
    """Trained from demo_root (paths.root=., so data.dir is relative), output_dir outside that tree."""
    run = tmp_path_factory.mktemp("scratch") / "x" / "run"
    result = run_cli(
        "parc.train",
        "experiment=demo",
        f"output_dir={run}",
        "trainer.max_steps=4",
        "checkpoint.every=4",
        "trainer.progress=false",
        cwd=demo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def batch_hashes(run) -> dict:
    return {
        row["step"]: row["batch_hash"]
        for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "batch_hash" in row
    }


def test_readers_find_the_recorded_stream_from_another_directory(far_run, demo_root, tmp_path):
    manifest = json.loads(next((demo_root / "data").glob("*/manifest.json")).read_text())
    record = json.loads((far_run / "data_stream.json").read_text())
    assert record["content_sha256"] == manifest["content_sha256"]
    assert (demo_root / "data").resolve() in Path(record["dir"]).parents
    assert "/" not in (far_run / "config.yaml").read_text().split("dir: ", 1)[1].split("\n")[0]  # still portable
    login = tmp_path / "login"
    login.mkdir()
    write_stimuli(
        tmp_path / "s.stims",
        [Stimulus(0, "the", "of", "the of", "train"), Stimulus(1, "in the", "and", "in the and", "train")],
    )
    # every reader, run from the login directory (in one interpreter, in turn: their cost is the imports)
    heldout, memorization, shown, counted = run_cli_cases(
        None,
        [
            [
                "parc.evaluate",
                "progress=false",
                f"runs={far_run}",
                "eval.heldout.sequences=8",
                "eval.batch_size=4",
                f"out={tmp_path / 'evals'}",
            ],
            [
                "parc.evaluate",
                "progress=false",
                "eval=memorization",
                f"runs={far_run}",
                "eval.sample=8",
                f"out={tmp_path / 'memo'}",
            ],
            ["parc.batch", f"run={far_run}", "step=3"],
            ["parc.ngrams", f"stimuli={tmp_path / 's.stims'}", f"runs={far_run}", f"out={tmp_path / 'ngrams'}"],
        ],
        cwd=login,
    )
    for result in (heldout, memorization, shown, counted):
        assert result.returncode == 0, result.stderr[-3000:]
    assert f"batch hash {batch_hashes(far_run)[3]}" in shown.stdout.splitlines()[0]
    assert (tmp_path / "evals").is_dir() and (tmp_path / "memo").is_dir() and (tmp_path / "ngrams").is_dir()


def test_a_gone_path_falls_back_beside_the_runs_and_another_stream_is_refused(far_run, demo_root, tmp_path):
    cluster = tmp_path / "cluster"
    (cluster / "runs").mkdir(parents=True)
    (cluster / "data").symlink_to(demo_root / "data")  # the same stream, now beside the runs
    moved = cluster / "runs" / "run"
    shutil.copytree(far_run, moved)
    record_file = moved / "data_stream.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "dir": str(tmp_path / "gone")}))
    args = ["progress=false", f"runs={moved}", "eval.heldout.sequences=8", "eval.batch_size=4"]
    found = run_cli("parc.evaluate", *args, f"out={tmp_path / 'a'}", cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-3000:]

    record_file.write_text(json.dumps({**record, "dir": str(tmp_path / "gone"), "content_sha256": "0" * 64}))
    refused = run_cli("parc.evaluate", *args, f"out={tmp_path / 'b'}", cwd=tmp_path)
    assert refused.returncode == 2 and "is not the stream" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()

    record_file.write_text(json.dumps({**record, "content_sha256": "0" * 64}))  # the recorded path, another stream
    refused = run_cli("parc.batch", f"run={moved}", "step=3", cwd=tmp_path)
    assert refused.returncode == 2 and "now holds another stream" in refused.stderr
