"""The study layer's shared pieces: tidy tables that survive many writers, and seed bands."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from parc.study.results import TidyTable
from parc.study.stats import band_of, bootstrap_ci, seed_bands


def unit(arch: str, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"arch": arch, "seed": seed, "step": [0, 10, 20], "value": [seed, seed + 0.5, seed * 2.0]})


UNITS = [(arch, seed) for arch in ("pythia", "mamba", "rwkv") for seed in range(4)]


def write_units(directory, units):
    table = TidyTable(directory, "results", ["arch", "seed", "step"])
    for arch, seed in units:
        table.write(f"{arch}/{seed}", unit(arch, seed))


def test_published_table_does_not_depend_on_write_order(tmp_path):
    write_units(tmp_path / "a", UNITS)
    write_units(tmp_path / "b", list(reversed(UNITS)))
    assert not (tmp_path / "a" / "results.parquet").exists()  # parts only until published
    paths_a = TidyTable(tmp_path / "a", "results", ["arch", "seed", "step"]).publish()
    paths_b = TidyTable(tmp_path / "b", "results", ["arch", "seed", "step"]).publish()
    for pa, pb in zip(paths_a, paths_b):
        assert pa.read_bytes() == pb.read_bytes()
    expected = pd.concat([unit(a, s) for a, s in UNITS]).sort_values(["arch", "seed", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.read_csv(paths_a[1]), expected, check_dtype=False)


def test_processes_writing_at_once_lose_no_rows(tmp_path):
    chunks = [UNITS[i::3] for i in range(3)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=write_units, args=(tmp_path, chunk)) for chunk in chunks]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    table = TidyTable(tmp_path, "results", ["arch", "seed", "step"])
    assert len(table.frame()) == 3 * len(UNITS)
    assert all(table.done(f"{a}/{s}") for a, s in UNITS)
    assert sorted(table.keys()) == sorted(f"{a}/{s}" for a, s in UNITS)


def _write_forever(directory):
    table = TidyTable(directory, "results", ["arch", "seed", "step"])
    n = 200_000  # large enough that a kill lands mid-write now and then
    big = pd.DataFrame({"arch": "pythia", "seed": np.arange(n) // 3, "step": np.arange(n) % 3, "value": np.ones(n)})
    i = 0
    while True:
        table.write(f"unit/{i % 3}", big)
        i += 1


def test_killed_writer_leaves_complete_parts_only(tmp_path):
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_write_forever, args=(tmp_path,))
    proc.start()
    parts = tmp_path / "parts" / "results"
    deadline = 200
    while deadline and len(list(parts.glob("*.parquet"))) < 2:
        proc.join(0.5)
        deadline -= 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    table = TidyTable(tmp_path, "results", ["arch", "seed", "step"])
    frame = table.frame()  # every part readable: none is half-written
    assert len(frame) % 200_000 == 0 and len(frame) > 0


@pytest.mark.parametrize("n", [2, 3, 6, 10])
def test_t_band_equals_scipy_interval(n):
    values = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    centre, low, high, count = band_of(values, "t95")
    lo, hi = scipy_stats.t.interval(0.95, n - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert count == n and centre == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((lo, hi), rel=1e-12)


def test_iqr_band_and_groups():
    frame = pd.DataFrame({"arch": ["a"] * 5 + ["b"] * 3, "value": [1, 2, 3, 4, 100, 5, 5, 5]})
    bands = seed_bands(frame, ["arch"], band="iqr").set_index("arch")
    assert bands.loc["a", ["centre", "low", "high"]].tolist() == [3.0, 2.0, 4.0]
    assert bands.loc["b", "n_seeds"] == 3 and bands.loc["b", "low"] == bands.loc["b", "high"] == 5.0
    assert band_of([7.0], "t95") == (7.0, 7.0, 7.0, 1)


def test_bootstrap_interval_covers_the_mean_difference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.1, 50), rng.normal(0.0, 0.1, 50)

    def diff(r):
        return r.choice(a, a.size).mean() - r.choice(b, b.size).mean()

    low, high = bootstrap_ci(diff, samples=500, seed=3)
    assert low < a.mean() - b.mean() < high and low > 0.9 and high < 1.1
    assert bootstrap_ci(diff, samples=500, seed=3) == (low, high)  # seeded: reproducible
