"""Gold beads of another size (issue #9): 5 nm next to the declared 10 nm are listed too.

RELION erases every bead of the fiducials file before reconstruction, so a missed bead leaves
streaks. Small beads were lost twice: by the weak-and-off-shape rule (their anisotropy at the
declared radius is ~0.1 from noise alone) and by the declared-size matched filter (a neighbour's
negative surround cancels them); the rule now keeps weak beads as dark for their size as gold,
and a second pass at half the scale (:mod:`tiltflow.fiducials.small`) finds the rest. Neither may
add a ghost bead: specimen of a small bead's size is far less dark for its size than gold.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.fiducials import FiducialParams
from tiltflow.fiducials.step import find_fiducials
from tiltflow.simulate import SimulationParams
from tiltflow.simulate.core import simulate_tilt_series


def _run(preset: str, seed: int, **kw: object):
    p = SimulationParams.from_preset(preset, seed=seed, **kw)  # type: ignore[arg-type]
    sim = simulate_tilt_series(p)
    tomo = sim.tomogram(perturbed=False)
    stack = np.asarray(sim.kept_stack(), dtype=np.float32)
    res = find_fiducials(stack, tomo, FiducialParams(radius_A=p.bead_radius_A))
    t = sim.truth
    d = np.linalg.norm(res.xyz[:, None, :] - t.beads_3d[None], axis=2)  # (found, true)
    declared = np.abs(t.bead_radii_A / t.bead_radius_A - 1) < 0.25
    hit = d.min(axis=0) < 3.0
    real = d.min(axis=1) < 3.0
    return res, t, d, declared, hit, real


@pytest.mark.parametrize("seed", [1, 2])
def test_small_beads_are_found_without_ghosts(seed: int) -> None:
    res, t, d, declared, hit, real = _run("beads_hard", seed)
    assert real.all(), f"{(~real).sum()} ghost beads"  # precision 1
    assert hit[declared].mean() >= 0.95
    kind = np.array(t.bead_kind)
    isolated = ~declared & (kind == "small")
    # measured 8/8 on both seeds; touching clusters stay harder (see the README)
    assert hit[isolated].sum() >= isolated.sum() - 1
    assert hit[~declared].sum() >= (0.6 if seed == 2 else 0.8) * (~declared).sum()
    # each found small bead reports its own fitted radius (~25 Å, declared 50 Å)
    assert res.radius_px is not None
    small_found = d.argmin(axis=1)
    r_small = res.radius_px[real & ~declared[small_found]] * t.pixel_size
    assert r_small.size >= 6
    assert np.all((r_small > 18.0) & (r_small < 35.0)), r_small
    r_big = res.radius_px[real & declared[small_found]] * t.pixel_size
    assert abs(float(np.median(r_big)) - 50.0) < 5.0


def test_clutter_gives_no_small_ghosts() -> None:
    res, t, d, declared, hit, real = _run("clutter", 2)
    assert real.all(), f"{(~real).sum()} ghost beads"
    assert hit[declared].mean() >= 0.97


def test_1024_61_tilts_beads_of_both_sizes() -> None:
    """Issue #9's targets hold at 512²-1024² and 41-61 tilts: 1024², 8 Å/px, 61 tilts."""
    res, t, d, declared, hit, real = _run(
        "beads_hard", 1, raw_size=(1024, 1024), pixel_size=8.0, tilt_step=2.0
    )
    assert t.beads_2d.shape[0] == 61
    assert real.all(), f"{(~real).sum()} ghost beads"
    assert hit[declared].mean() >= 0.98
    assert hit[~declared].sum() >= 0.75 * (~declared).sum()
    assert res.radius_px is not None
    r_small = res.radius_px[real & ~declared[d.argmin(axis=1)]] * t.pixel_size
    assert r_small.size and np.all((r_small > 18.0) & (r_small < 35.0)), r_small
