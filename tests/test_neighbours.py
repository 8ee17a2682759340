"""The grid neighbour search (tiltflow.neighbours) against scipy's cKDTree and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from tiltflow.neighbours import close_pairs, nearest_within


def _sorted(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(pairs.reshape(-1, 2), axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chebyshev", [False, True])
def test_close_pairs_match_cKDTree(seed: int, chebyshev: bool) -> None:
    rng = np.random.default_rng(seed)
    d = 1 + seed % 3
    n = int(rng.integers(2, 400))
    r = float(rng.uniform(0.5, 15.0))
    pts = rng.uniform(0, 150, (n, d))
    if seed % 2:
        pts = np.round(pts)  # distances exactly r: included (<= r), as cKDTree
    got = close_pairs(pts, r, chebyshev=chebyshev)
    want = cKDTree(pts).query_pairs(r, p=np.inf if chebyshev else 2, output_type="ndarray")
    np.testing.assert_array_equal(got, _sorted(want))


def test_close_pairs_groups_and_nonfinite() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.5], [np.nan, 0.0], [10.0, 10.0]])
    # by hand: within 1.0 are (0,1), (0,2), (1,2)
    np.testing.assert_array_equal(close_pairs(pts, 1.0), [[0, 1], [0, 2], [1, 2]])
    # the same points in two groups (frames): only pairs within a group
    np.testing.assert_array_equal(
        close_pairs(pts, 1.0, groups=[0, 0, 1, 0, 1]), [[0, 1]]
    )
    assert close_pairs(np.zeros((1, 2)), 1.0).shape == (0, 2)
    with pytest.raises(ValueError, match="radius"):
        close_pairs(pts, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_nearest_within_matches_cKDTree(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    d = 2 + seed % 2
    pts = rng.uniform(0, 100, (int(rng.integers(1, 300)), d))
    qs = rng.uniform(-5, 105, (200, d))
    if seed % 2:
        pts, qs = np.round(pts), np.round(qs)  # distances exactly r: excluded (< r), as cKDTree
    r = 4.0
    dist, j = nearest_within(pts, qs, r)
    d_ref, j_ref = cKDTree(pts).query(qs, k=1, distance_upper_bound=r)
    np.testing.assert_array_equal(np.isfinite(dist), np.isfinite(d_ref))
    hit = np.isfinite(d_ref)
    np.testing.assert_allclose(dist[hit], d_ref[hit], rtol=0, atol=1e-12)
    assert np.all(j[~hit] == len(pts)) and np.all(j_ref[~hit] == len(pts))
    # the same distance (ties may pick another point of equal distance)
    np.testing.assert_allclose(
        np.linalg.norm(pts[j[hit]] - qs[hit], axis=1), d_ref[hit], rtol=0, atol=1e-12
    )


def test_nearest_within_groups_and_ties() -> None:
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    qs = np.array([[1.0, 1.0], [1.0, 1.0]])
    dist, j = nearest_within(pts, qs, 2.0, point_groups=[0, 0, 1], query_groups=[0, 1])
    # group 0: points 0 and 1 both at sqrt(2): the lower row; group 1: point 2 at 1
    np.testing.assert_allclose(dist, [np.sqrt(2.0), 1.0])
    np.testing.assert_array_equal(j, [0, 2])
    dist, j = nearest_within(pts, np.array([[50.0, 50.0]]), 2.0)
    assert np.isinf(dist[0]) and j[0] == 3
