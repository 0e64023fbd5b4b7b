"""Seed bands against independent computations (scipy's t interval, pandas' quantiles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from parc.study.stats import band_of, seed_bands


@pytest.mark.parametrize("values", [[0.31, 0.35, 0.29], [5.0, 4.1, 4.4, 4.9, 5.3, 4.0, 4.6], [2.0, 2.0]])
def test_t95_band_is_scipys_t_interval(values):
    centre, low, high, n = band_of(values, "t95")
    expected_low, expected_high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                                         scale=scipy_stats.sem(values)) if np.std(values) else (2.0, 2.0)
    assert n == len(values) and centre == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx((expected_low, expected_high), rel=1e-12, abs=1e-12)


def test_iqr_band_is_the_quartiles_and_nan_is_dropped():
    values = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, float("nan")]
    series = pd.Series(values).dropna()
    assert band_of(values, "iqr") == pytest.approx((series.median(), series.quantile(0.25), series.quantile(0.75), 6))


def test_seed_bands_group_by_step():
    frame = pd.DataFrame({"step": [1, 1, 1, 2, 2, 2], "value": [1.0, 2.0, 3.0, 2.0, 4.0, 9.0]})
    bands = seed_bands(frame, ["step"], band="t95")
    for _, row in bands.iterrows():
        values = frame[frame.step == row.step].value
        low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
        assert (row.centre, row.low, row.high, row.n_seeds) == pytest.approx((values.mean(), low, high, 3))
