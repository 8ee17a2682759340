"""The ice step's fast kernels give the numbers of the numpy/scipy calls they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tiltflow.ice import intensity as I


@pytest.mark.parametrize("q", [1, 2, 3, 5, 7, 8, 11])
def test_block_sum_is_numpys_bit_for_bit(q):
    rng = np.random.default_rng(q)
    for i in range(40):
        h, w = rng.integers(q, 120, 2) if i % 2 else rng.integers(q, 3 * q, 2)
        x = rng.normal(100.0, 10.0, (h, w)) * 10.0 ** int(rng.integers(-3, 3))
        hq, wq = h // q, w // q
        ref = x[: hq * q, : wq * q].reshape(hq, q, wq, q).sum(axis=(1, 3))
        assert np.array_equal(I._block_sum(x, q), ref)
        b = rng.random((h, w)) > 0.3
        rb = b[: hq * q, : wq * q].reshape(hq, q, wq, q).sum(axis=(1, 3))
        got = I._block_sum(b.view(np.uint8), q)
        assert np.array_equal(got, rb) and got.dtype == rb.dtype


def test_grow_square_is_maximum_filter():
    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = rng.integers(1, 40, 2)
        size = int(2 * rng.integers(0, 15) + 1)
        m = rng.random((h, w)) < 0.1 * rng.random()
        ref = ndimage.maximum_filter(m.view(np.uint8), size=size) > 0
        assert np.array_equal(I._grow_square(m, size), ref)


def test_flat_at_is_bilinear_map_coordinates():
    rng = np.random.default_rng(3)
    for _ in range(200):
        fh, fw = rng.integers(1, 20, 2)
        ff = rng.random((fh, fw)) + 0.5
        b, step = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        hh, ww = rng.integers(1, 30, 2)
        y0, x0 = rng.integers(-5, fh * b, 2)
        off = (step - 1) / 2.0 - (b - 1) / 2.0
        yy = (y0 + step * np.arange(hh) + off) / b
        xx = (x0 + step * np.arange(ww) + off) / b
        gy, gx = np.meshgrid(yy, xx, indexing="ij")
        ref = ndimage.map_coordinates(ff, [gy, gx], order=1, mode="nearest")
        np.testing.assert_allclose(I._flat_at(ff, b, y0, x0, hh, ww, step), ref, rtol=1e-14)


def test_gauss_and_masked_smooth_are_gaussian_filter_bit_for_bit():
    rng = np.random.default_rng(4)
    for _ in range(30):
        h, w = rng.integers(3, 200, 2)
        s = float(rng.uniform(0.5, 12.0))
        x = rng.normal(100.0, 10.0, (h, w))
        keep = rng.random((h, w)) > rng.random()
        assert np.array_equal(I._gauss(x, s), ndimage.gaussian_filter(x, s, mode="nearest"))
        wgt = ndimage.gaussian_filter(keep.astype(np.float64), s, mode="nearest")
        val = ndimage.gaussian_filter(np.where(keep, x, 0.0), s, mode="nearest")
        ref = np.full(x.shape, np.nan)
        ok = wgt > 0.2
        ref[ok] = val[ok] / wgt[ok]
        assert np.array_equal(I._masked_smooth(x, keep, s), ref, equal_nan=True)
