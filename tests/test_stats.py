"""tiltflow.stats: np.median from one partition, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.stats import median, median_rows


def test_median_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 7, 8, 101, 1000, 4097):
        for _ in range(10):
            v = rng.normal(100.0, 10.0, n)
            if rng.random() < 0.3:
                v = np.round(v)  # ties
            assert median(v) == float(np.median(v))
    assert np.isnan(median(np.array([])))
    v = rng.normal(size=50)
    v[7] = np.nan
    assert np.isnan(median(v))
    v[:40] = np.nan
    assert np.isnan(median(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 5, 64, 65536, 65537])
def test_row_medians_are_numpys_bit_for_bit(dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(0.0, 1.0, (4, n)).astype(dtype)
    a[1] = np.round(a[1] * 3)  # ties
    if n > 1:
        a[2, n // 3] = np.nan  # a row with NaN: NaN, as numpy
    got, want = median_rows(a), np.median(a, axis=1)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert median_rows(np.zeros((3, 0))).shape == (3,)
