"""The numpy assignment solver against scipy's and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tiltflow.assignment import min_cost_assignment


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (3, 3), (5, 8), (20, 20), (41, 45), (61, 61)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_minimum_as_scipy(shape: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0, 10, shape)
    if seed == 2:
        cost = np.round(cost)  # many ties
    rows, cols = min_cost_assignment(cost)
    assert np.array_equal(rows, np.arange(shape[0]))
    assert len(set(cols.tolist())) == shape[0]  # one-to-one
    r_ref, c_ref = linear_sum_assignment(cost)
    assert cost[rows, cols].sum() == pytest.approx(cost[r_ref, c_ref].sum(), abs=1e-9)


def test_brute_force_small() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n, m = int(rng.integers(1, 5)), int(rng.integers(4, 6))
        cost = rng.normal(size=(n, m))
        _, cols = min_cost_assignment(cost)
        best = min(
            sum(cost[i, c] for i, c in enumerate(perm))
            for perm in itertools.permutations(range(m), n)
        )
        assert cost[np.arange(n), cols].sum() == pytest.approx(best, abs=1e-12)


def test_angle_matching_with_tie_breaking_as_scipy() -> None:
    """The importer's use: |tilt - entry| + 1e-9 * entry index (ties to the earlier entry)."""
    t = np.arange(-60, 61, 3.0) + 1.5  # every tilt half-way between two entries
    r = np.arange(-60, 64, 3.0)
    cost = np.abs(t[:, None] - r[None, :]) + 1e-9 * np.arange(r.size)[None, :]
    _, cols = min_cost_assignment(cost)
    _, c_ref = linear_sum_assignment(cost)
    assert np.array_equal(cols, c_ref)


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="more rows"):
        min_cost_assignment(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        min_cost_assignment(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2D"):
        min_cost_assignment(np.zeros(3))


def _gated_reference(q: np.ndarray, gate: np.ndarray, pts: np.ndarray):
    """The association's gated assignment solved whole by scipy (the form before the shortcut)."""
    d2 = np.sum((q[:, None, :] - pts[None, :, :]) ** 2, axis=2)
    ok = np.isfinite(d2) & (d2 <= gate[:, None] ** 2)
    rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        return np.zeros(0, int), np.zeros(0, int), d2
    sub = np.where(ok[np.ix_(rows, cols)], d2[np.ix_(rows, cols)], 1e12)
    r, c = linear_sum_assignment(sub)
    good = sub[r, c] < 1e12
    return rows[r[good]], cols[c[good]], d2


def test_gated_association_matches_scipy() -> None:
    """fiducials.associate._assign (isolated pairs directly, the rest by our solver) finds as
    many pairs, of the same total cost, as scipy on the whole gated problem."""
    from tiltflow.fiducials.associate import _assign

    rng = np.random.default_rng(11)
    for trial in range(400):
        m, k = int(rng.integers(0, 30)), int(rng.integers(0, 40))
        q = rng.uniform(0, 150, (m, 2))
        near = min(k // 2, m)
        pts = np.concatenate(
            [q[:near] + rng.normal(0, 2, (near, 2)), rng.uniform(0, 150, (k - near, 2))]
        )
        if trial % 5 == 0 and m:
            q[0] = np.nan  # a prediction off the image
        gate = rng.uniform(2, 25, m)
        r, c = _assign(q, gate, pts)
        r_ref, c_ref, d2 = _gated_reference(q, gate, pts)
        assert np.all(np.diff(r) > 0) and len(set(c.tolist())) == c.size
        assert np.all(d2[r, c] <= gate[r] ** 2)
        assert r.size == r_ref.size, trial
        assert d2[r, c].sum() == pytest.approx(d2[r_ref, c_ref].sum(), abs=1e-6), trial
