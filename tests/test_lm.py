"""Our Levenberg-Marquardt (tiltflow.lm) against scipy.optimize.least_squares and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from tiltflow.lm import jacobian, levenberg_marquardt


def test_rosenbrock_minimum() -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    res = levenberg_marquardt(f, [-1.2, 1.0])
    assert res.converged
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-10)
    assert res.cost < 1e-20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_minimum_as_scipy_on_a_noisy_fit(seed: int) -> None:
    """A Beer-Lambert-like fit, log I = a - t / |cos(theta - p)|, with noise and a poor start."""
    rng = np.random.default_rng(seed)
    theta = np.radians(np.arange(-60.0, 61.0, 3.0))
    y = 1.2 - 0.35 / np.abs(np.cos(theta - 0.08)) + rng.normal(0.0, 0.01, theta.size)

    def f(x: np.ndarray) -> np.ndarray:
        return x[0] - x[1] / np.abs(np.cos(theta - x[2])) - y

    ours = levenberg_marquardt(f, [0.0, 0.1, 0.0])
    ref = least_squares(
        f, [0.0, 0.1, 0.0], method="lm", x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12
    )
    assert ours.converged
    np.testing.assert_allclose(ours.x, ref.x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.cost, ref.cost, rtol=1e-9)
    np.testing.assert_allclose(ours.jac, ref.jac, atol=1e-6)
    # the true parameters within a few standard errors
    assert abs(ours.x[1] - 0.35) < 0.02 and abs(ours.x[2] - 0.08) < 0.02


def test_jacobian_by_hand() -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return np.array([x[0] * x[1], np.sin(x[0]), x[1] ** 3])

    x = np.array([0.7, -1.3])
    want = np.array([[x[1], x[0]], [np.cos(x[0]), 0.0], [0.0, 3 * x[1] ** 2]])
    np.testing.assert_allclose(jacobian(f, x), want, atol=1e-9)


def test_stops_at_max_nfev() -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    res = levenberg_marquardt(f, [-1.2, 1.0], max_nfev=12)
    assert not res.converged and res.nfev <= 12 + 2 * 2
