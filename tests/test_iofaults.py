"""Disk faults on real, small filesystems (tmpfs): a full disk, a read-only or vanished filesystem while
writing a checkpoint, a metrics row or prepared data ends with one line and exit 74, the partial write is
removed, what was written before stays intact, and the same command continues once space is freed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from test_checkpoint import parts, save  # noqa: F401  (the fixture)

from parc.store import integrity
from parc.store.iofaults import EXIT_IO_ERROR, DiskFault, check_same_directory, directory_identity

from conftest import run_cli, short_run, train

PAGE = os.sysconf("SC_PAGE_SIZE")


def pages(*paths: Path) -> int:
    """Bytes these files take on a tmpfs: each rounded up to whole pages."""
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in paths)


def tree_pages(root: Path) -> int:
    return pages(*[p for p in Path(root).rglob("*") if p.is_file()])


@pytest.fixture()
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of `size` bytes; every mount is undone at teardown."""
    mounted = []

    def mount(size: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def fill(point: Path) -> Path:
    """Take every free byte of the filesystem; returns the filler file (delete it to free the space)."""
    filler = point / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * PAGE)
        except OSError:
            pass
    return filler


def assert_one_line_fault(result, *phrases):
    assert result.returncode == EXIT_IO_ERROR, (result.returncode, result.stderr[-3000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


def one_step(parts):
    """An optimizer step, so that optimizer.pt holds AdamW's moments (twice the weights)."""
    _, model, optimizer, _, _ = parts
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


# --- checkpoint save, in process ------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["model.safetensors", "training_state/optimizer.pt"])
def test_a_checkpoint_save_on_a_full_disk_removes_its_partial_write(parts, tmp_path, tmpfs, failing):
    one_step(parts)
    reference = save(parts, tmp_path / "reference", 2).parent  # the same checkpoint on a disk with room
    ref = reference / "checkpoint-2"
    order = [
        "training_state/rng-rank0.pt",
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "training_state/optimizer.pt",
    ]  # the order save() writes them
    before = order[: order.index(failing)]
    size = tree_pages(ref) + pages(*[ref / f for f in before if (ref / f).exists()]) + pages(ref / failing) // 2
    out = tmpfs(size) / "run"
    out.mkdir()
    save(parts, out, 2)
    with pytest.raises(DiskFault) as caught:
        save(parts, out, 4)
    message = str(caught.value)
    for phrase in (
        f"saving checkpoint-4 to {out} failed: no space left on the device",
        "free of",
        "choose another output_dir=",
        "run the same command again (it resumes from checkpoint-2)",
    ):
        assert phrase in message, message
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]  # no .checkpoint-4.partial
    assert integrity.verify(out / "checkpoint-2").ok
    remount(out.parent, f"size={4 * tree_pages(ref)}")  # space freed: the same save now succeeds
    assert integrity.verify(save(parts, out, 4)).ok


def test_a_read_only_filesystem_is_one_line_and_keeps_what_is_there(parts, tmpfs):
    out = tmpfs(64 << 20) / "run"
    out.mkdir()
    save(parts, out, 2)
    remount(out.parent, "ro")
    with pytest.raises(DiskFault, match="saving checkpoint-4 .* failed: the filesystem is read-only"):
        save(parts, out, 4)
    remount(out.parent, "rw")
    assert [p.name for p in out.iterdir()] == ["checkpoint-2"] and integrity.verify(out / "checkpoint-2").ok


def test_a_file_size_limit_like_a_quota_is_one_line_too(parts, tmp_path):
    import resource

    out = tmp_path / "run"
    out.mkdir()
    save(parts, out, 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # a real per-process limit: 1 MB per file (EFBIG)
    try:
        with pytest.raises(DiskFault, match="saving checkpoint-4 .* failed: the file exceeds .* file size limit"):
            save(parts, out, 4)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert [p.name for p in out.iterdir()] == ["checkpoint-2"] and integrity.verify(out / "checkpoint-2").ok


@pytest.mark.parametrize("where", ["a directory on it", "the mount point itself"])
def test_a_vanished_filesystem_is_noticed_before_writing_elsewhere(tmpfs, where):
    point = tmpfs(1 << 20)
    out = point / "run" if where == "a directory on it" else point
    out.mkdir(exist_ok=True)
    identity = directory_identity(out)
    check_same_directory(out, identity, "saving checkpoint-4")  # still there: no complaint
    subprocess.run(["umount", "-l", str(point)], check=True)  # unmounted under the running job
    with pytest.raises(DiskFault, match="saving checkpoint-4 failed: .* is gone or no longer the directory"):
        check_same_directory(out, identity, "saving checkpoint-4")


# --- metrics rows, in process ---------------------------------------------------------------------------


def test_a_full_disk_while_appending_metrics_leaves_only_whole_rows(tmpfs):
    from parc.config import compose
    from parc.store.metricsfile import read_metrics, truncate_metrics
    from parc.training.metrics import RunReporter

    out = tmpfs(1 << 20) / "run"
    out.mkdir()
    cfg = compose(["experiment=demo", "trainer.progress=false"])
    reporter = RunReporter(cfg, out, 0, 1000)
    path = out / "metrics.jsonl"

    def row(step):
        return {"step": step, "loss": 1.0 / step, "lr": 1e-3, "tokens": step, "tokens_per_s": 1.0, "pad": "x" * 200}

    step = 0
    while path.stat().st_size % PAGE < PAGE - 300:  # the next row crosses a page boundary: a partial write
        step += 1
        reporter.log(row(step))
    filler = fill(out.parent)
    with pytest.raises(DiskFault, match=rf"appending step {step + 1} to {path} failed: no space left"):
        reporter.log(row(step + 1))
    reporter.close()
    assert path.read_text().endswith("\n")
    assert [r["step"] for r in read_metrics(path)] == list(range(1, step + 1))  # whole rows, none half-written
    filler.unlink()
    truncate_metrics(path, step - 1)  # what a resume does: still readable, rewritten atomically
    assert [r["step"] for r in read_metrics(path)] == list(range(1, step))


def test_a_row_cut_short_by_a_crash_is_dropped_on_resume(tmp_path):
    from parc.store.metricsfile import read_metrics, truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    truncate_metrics(path, 5)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


# --- whole commands -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)  # five training commands: minutes on a shared 2-core machine
def test_training_on_a_small_disk_fails_in_one_line_and_the_same_command_resumes(demo_root, tmp_path, tmpfs):
    reference = tmp_path / "reference" / "run"
    train(*short_run(demo_root, reference))
    fs = tmpfs(tree_pages(reference) - tree_pages(reference / "checkpoint-8") // 2)
    out = fs / "run"  # the same name: the same config.yaml and checkpoint sizes as the reference

    filler = fill(fs)  # full before anything is written
    result = run_cli("parc.train", *short_run(demo_root, out))
    assert_one_line_fault(
        result, f"writing {out / 'config.yaml'} failed: no space left on the device", "then run the same command again"
    )
    assert not any(out.glob("checkpoint-*")) and not (out / "config.yaml").exists()
    filler.unlink()

    result = run_cli("parc.train", *short_run(demo_root, out))  # fills up while saving checkpoint-8
    assert_one_line_fault(
        result,
        f"saving checkpoint-8 to {out} failed: no space left on the device",
        "free of",
        "it resumes from checkpoint-4",
    )
    assert "warning: the checkpoint schedule needs" in result.stderr  # said at the start, with the numbers
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-0", "checkpoint-4"]
    assert all(integrity.verify(out / f"checkpoint-{s}").ok for s in (0, 4))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reference_rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference_rows]  # steps 1..8, intact

    remount(fs, f"size={4 * tree_pages(reference)}")  # space freed
    result = train(*short_run(demo_root, out))
    assert f"resuming from {out / 'checkpoint-4'}" in result.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference_rows]
    assert (out / "checkpoint-8" / "model.safetensors").read_bytes() == (
        reference / "checkpoint-8" / "model.safetensors"
    ).read_bytes()


@pytest.mark.slow
def test_prepare_on_a_full_disk_fails_in_one_line_and_the_same_command_finishes(tmp_path, tmpfs):
    overrides = ["experiment=demo", "data.max_documents=4"]
    reference = tmp_path / "reference"
    assert run_cli("parc.prepare", *overrides, f"data.dir={reference}").returncode == 0
    tokenizer = tree_pages(reference / "tokenizer")
    arrays = tree_pages(reference / "parts") if (reference / "parts").exists() else 0
    fs = tmpfs(tokenizer + (tree_pages(reference) - tokenizer) // 2)
    data = fs / "data"
    result = run_cli("parc.prepare", *overrides, f"data.dir={data}")
    assert_one_line_fault(
        result,
        f"preparing data in {data} failed: no space left on the device",
        "choose another data.dir=",
        "run the same command again",
    )
    assert not (data / "manifest.json").exists()
    assert not list(data.rglob(".tmp-*")), list(data.rglob(".tmp-*"))  # the partial write is gone
    remount(fs, f"size={4 * tree_pages(reference)}")
    result = run_cli("parc.prepare", *overrides, f"data.dir={data}")
    assert result.returncode == 0, result.stderr[-2000:]
    made, expected = (json.loads((d / "manifest.json").read_text()) for d in (data, reference))
    assert made["content_sha256"] == expected["content_sha256"] and made["num_sequences"] == expected["num_sequences"]
    assert arrays == 0 or tree_pages(data / "parts") == arrays
