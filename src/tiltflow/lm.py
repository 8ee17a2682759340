"""Levenberg-Marquardt for small dense least-squares problems, in numpy.

The ice fit has 3-4 parameters and a few dozen residuals; ``scipy.optimize.least_squares``
solves it in a millisecond, but importing ``scipy.optimize`` costs the ice step's process about
0.2 s, more than the fit. This is the textbook method (Marquardt's diagonal scaling, which is
what ``least_squares(method="lm", x_scale="jac")`` does through MINPACK), with a central-
difference Jacobian, so it converges to the same minimum (the tests compare the two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class LMResult:
    """Solution of :func:`levenberg_marquardt`."""

    x: F64  #: the parameters at the minimum
    fun: F64  #: the residuals there
    jac: F64  #: their Jacobian there (central differences)
    cost: float  #: half the sum of squared residuals, as scipy reports it
    nfev: int  #: residual evaluations
    converged: bool  #: a tolerance was met (False: max_nfev reached first)


def jacobian(fun: Callable[[F64], F64], x: F64) -> F64:
    """Central-difference Jacobian of ``fun`` at ``x`` (steps ∝ the cube root of eps)."""
    h = np.cbrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(x))
    cols = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = h[k]
        cols.append((fun(x + e) - fun(x - e)) / (2.0 * h[k]))
    return np.stack(cols, axis=1)


def levenberg_marquardt(
    fun: Callable[[F64], F64],
    x0: ArrayLike,
    xtol: float = 1e-12,
    ftol: float = 1e-12,
    gtol: float = 1e-12,
    max_nfev: int = 2000,
) -> LMResult:
    """Minimise ``sum(fun(x)**2)`` from ``x0``.

    Stops when the relative reduction of the sum of squares is below ``ftol`` on an accepted
    step, the step is below ``xtol`` relative to ``x``, or the scaled gradient is below
    ``gtol``; ``fun`` must return finite values near the solution.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    r = np.asarray(fun(x), dtype=np.float64)
    nfev = 1
    cost = float(r @ r)
    lam = 1e-3
    converged = False
    jac = jacobian(fun, x)
    nfev += 2 * x.size
    while nfev < max_nfev:
        a = jac.T @ jac
        g = jac.T @ r
        d = np.maximum(np.diag(a), np.finfo(np.float64).tiny)
        if float(np.max(np.abs(g) / np.sqrt(d * max(cost, np.finfo(np.float64).tiny)))) <= gtol:
            converged = True
            break
        accepted = False
        while nfev < max_nfev:
            try:
                step = np.linalg.solve(a + lam * np.diag(d), -g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            x_new = x + step
            r_new = np.asarray(fun(x_new), dtype=np.float64)
            nfev += 1
            cost_new = float(r_new @ r_new) if np.all(np.isfinite(r_new)) else np.inf
            if cost_new <= cost:
                accepted = True
                break
            lam *= 10.0
            if lam > 1e16:
                break
        if not accepted:
            # no descent left at any damping: at the minimum to machine precision (unless the
            # evaluations ran out first)
            converged = lam > 1e16
            break
        small_step = float(np.linalg.norm(step)) <= xtol * (xtol + float(np.linalg.norm(x)))
        small_gain = cost - cost_new <= ftol * cost
        x, r, cost = x_new, r_new, cost_new
        lam = max(lam / 10.0, 1e-12)
        jac = jacobian(fun, x)
        nfev += 2 * x.size
        if small_step or small_gain:
            converged = True
            break
    return LMResult(x=x, fun=r, jac=jac, cost=0.5 * cost, nfev=nfev, converged=converged)
