"""Per-tilt electron dose and pre-exposure."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def per_tilt_dose(pre_exposure: ArrayLike, fractional_dose: float) -> NDArray[np.float64]:
    """Dose of each tilt (e/Å²) implied by the pre-exposures (see docs/CONTRACTS.md).

    Sorting the tilts chronologically, each tilt's dose is the next tilt's pre-exposure minus its
    own. The last tilt's dose is ``fractional_dose`` when all the others equal it (within 1e-6
    relative), otherwise NaN (unknown).
    """
    pre = np.asarray(pre_exposure, dtype=np.float64).reshape(-1)
    n = pre.size
    out = np.full(n, np.nan)
    if n == 0:
        return out
    order = np.argsort(pre, kind="stable")
    diffs = np.diff(pre[order])
    out[order[:-1]] = diffs
    if n == 1 or np.allclose(diffs, fractional_dose, rtol=1e-6, atol=1e-9):
        out[order[-1]] = fractional_dose
    return out
