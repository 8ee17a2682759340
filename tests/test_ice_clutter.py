"""Ice thickness and scale factors with cellular clutter in the ice (issue #9 item 4).

The simulator's clutter (ribosomes, vesicles, membranes, 1/f texture) displaces the ice it sits
in: a ribosome attenuates 1.3 times, lipid 1.15 times as much as the same length of ice, and
only that excess is rendered, so the truth's thickness is the slab's. Before, the clutter
absorbed on top of the full ice path (a ribosome like 2.15 times its volume of ice) and the fit
read +4-6 % thickness. Targets: thickness within 3 %, scale factors within 1 % of the truth.
The dense-object mask of the ice step takes out most of what still absorbs more than ice.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.ice import IceParams
from tiltflow.ice.core import estimate_ice
from tiltflow.ice.intensity import dense_object_mask
from tiltflow.simulate import SimulationParams
from tiltflow.simulate.core import simulate_tilt_series


def _errors(sim, params: IceParams = IceParams()) -> tuple[float, float]:  # noqa: B008
    tomo = sim.tomogram(perturbed=False)
    res = estimate_ice(tomo, np.asarray(sim.kept_stack()), params, beads_world=sim.truth.beads_3d)
    t_err = res.t / sim.truth.ice_thickness_rel - 1
    s_err = float(np.max(np.abs(res.scale / sim.truth.scale_factor[sim.kept] - 1)))
    return t_err, s_err


def _clutter(seed: int, **kw):
    p = SimulationParams.from_preset("clutter", raw_size=(512, 512), pixel_size=10.0, seed=seed,
                                     **kw)
    return simulate_tilt_series(p)


@pytest.mark.parametrize("seed", [1, 2])
def test_clutter_preset_thickness_and_scales(seed):
    t_err, s_err = _errors(_clutter(seed))
    assert abs(t_err) < 0.015  # measured +0.7 / +0.9 % (target 3 %)
    assert s_err < 0.005  # measured 0.3 % (target 1 %)


def test_clutter_displaces_the_ice():
    # ribosomes alone, noise-free: the image mean falls below the ice-only level by only the
    # excess attenuation of their volume, (1.3 - 1) x volume / mean free path
    p = SimulationParams.from_preset(
        "clutter", raw_size=(256, 256), pixel_size=10.0, seed=1, noise=False, n_beads=0,
        vesicles_per_um2=0.0, membranes_per_um2=0.0, texture_phase_rms=0.0,
        background_variation=0.0, tilt_min=0.0, tilt_max=0.0,
    )
    sim = simulate_tilt_series(p)
    level = sim.truth.dose[0] * sim.truth.luminance * sim.truth.attenuation[0]
    deficit = 1.0 - float(sim.stack[0].mean()) / level
    # 400 ribosomes per µm² of two spheres (r = 10 and 7.5 nm): 2.4 nm of protein per 100 nm of
    # ice, i.e. 0.3 x 2.4 / 350 = 0.2 % (the old rendering: 1.15 x 2.4 / 350 = 0.8 %)
    assert 0.001 < deficit < 0.0035
    off = simulate_tilt_series(p.replace(protein_absorption=1.0))
    assert abs(float(off.stack[0].mean()) / level - 1) < 2e-4  # like ice: no attenuation


def test_dense_clutter_is_masked():
    # clutter three times as absorbing as ice: without the dense-object mask the fit reads it as
    # ice (+3.5 % thickness, 1.0 % scale factors); with it, within 1 %
    sim = _clutter(1, protein_absorption=3.0)
    t_off, s_off = _errors(sim, IceParams(dense_mask_sigma=0.0))
    t_on, s_on = _errors(sim)
    assert t_off > 0.025
    assert abs(t_on) < 0.01 and s_on < 0.005
    assert abs(t_on) < 0.5 * abs(t_off)


def test_dense_object_mask_finds_dark_discs_not_noise_or_ramps():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:256, 0:256]
    noise = rng.normal(1.0, 0.05, (256, 256))
    keep = np.ones(noise.shape, bool)
    # white noise loses ~8 % of the window (3σ dips and peaks, dilated by their scale), evenly
    # above and below the level, so the mean is unbiased
    m0 = dense_object_mask(noise, keep, 5.0, 3.0)
    assert m0.mean() < 0.15
    assert abs(noise[~m0].mean() - noise.mean()) < 1e-3
    ramp = noise + 0.1 * (xx / 255.0 - 0.5)  # a thickness gradient is not an object
    assert dense_object_mask(ramp, keep, 5.0, 3.0).mean() < 0.15
    img = noise.copy()
    centres = [(60, 60), (180, 70), (120, 190), (200, 200)]
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12**2] *= 0.96  # 4 % darker, 24 px across
    m = dense_object_mask(img, keep, 5.0, 3.0)
    for cy, cx in centres:
        assert m[cy - 6 : cy + 7, cx - 6 : cx + 7].mean() > 0.9
    assert not dense_object_mask(img, keep, 5.0, 0.0).any()  # 0 = off
