"""Shape-aware bead detection (issue #9 item 2): round, dark, of the declared size — not edges.

The carbon-film case: a straight 3D film edge whose projection moves with the tilt like a real
one. The matched filter fires along its dark side in every view and, before the shape test,
those detections formed 3D-consistent "beads" (45 ghosts next to 20 real beads here).
"""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.fiducials import FiducialParams
from tiltflow.fiducials.io import BEADS_BLOCK, bead_table, read_beads, write_tracks
from tiltflow.fiducials.shape import appearance, blurred_sphere, is_bead_like
from tiltflow.fiducials.step import find_fiducials
from tiltflow.geometry import project
from tiltflow.simulate import SimulationParams
from tiltflow.simulate.core import simulate_tilt_series


def _bead_image(radius, centre, size=96, contrast=0.3, noise=0.01, seed=0, blur=0.6):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    rho = np.hypot(xx - centre[0], yy - centre[1])
    r_grid = np.linspace(0, 3 * radius, 600)
    prof = np.interp(rho, r_grid, blurred_sphere(radius, blur, r_grid))
    img = 100.0 * (1.0 - contrast * prof)
    img += np.random.default_rng(seed).normal(0, noise * 100, img.shape)
    return img[None].astype(np.float32)


@pytest.mark.parametrize("radius", [3.0, 6.25, 12.0])
def test_round_bead_radius_and_isotropy(radius):
    c = (47.3, 48.6)
    img = _bead_image(radius, c)
    app = appearance(img, np.array([0]), np.array([c[0]]), np.array([c[1]]), radius)
    assert abs(app.radius[0] / radius - 1) < 0.05
    assert app.anisotropy[0] < 0.08
    assert app.contrast[0] < -0.1
    # a bead of half the declared size is measured as such
    half = appearance(img, np.array([0]), np.array([c[0]]), np.array([c[1]]), 2 * radius)
    assert abs(half.radius[0] / radius - 1) < 0.1


def test_bead_cut_by_the_image_border_is_still_round():
    img = _bead_image(6.0, (1.5, 50.0))
    app = appearance(img, np.array([0]), np.array([1.5]), np.array([50.0]), 6.0)
    assert app.anisotropy[0] < 0.15
    assert is_bead_like(app, 6.0, 0.3)[0]


def test_edge_and_line_are_anisotropic():
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
    edge = 100.0 * np.where(xx * 0.8 + yy * 0.6 > 60, 0.8, 1.0)
    line = 100.0 * np.where(np.abs(xx * 0.6 - yy * 0.8 + 10) < 2.0, 0.8, 1.0)
    # points on the dark side of the edge, one radius from it; and on the line
    app_e = appearance(edge[None], np.array([0]), np.array([52.0]), np.array([40.0]), 6.0)
    app_l = appearance(line[None], np.array([0]), np.array([48.0]), np.array([48.5]), 6.0)
    assert app_e.dipole[0] > 0.25
    assert app_l.quadrupole[0] > 0.25
    assert not is_bead_like(app_e, 6.0, 0.3)[0] and not is_bead_like(app_l, 6.0, 0.3)[0]


def _with_carbon_edge(seed=3):
    p = SimulationParams(raw_size=(512, 512), pixel_size=10.0, n_beads=20, seed=seed)
    sim = simulate_tilt_series(p)
    tomo = sim.tomogram(perturbed=False)
    stack = np.array(sim.kept_stack(), dtype=np.float32)
    n, h, w = stack.shape
    yy, xx = np.mgrid[0:h, 0:w]
    c = np.asarray(tomo.size, float) / 2 + 1
    x0 = c + np.array([30.0, 40.0, -20.0])
    d = np.array([0.6, 0.0, 0.8])
    ends = project(tomo.proj, np.stack([x0 - 400 * d, x0 + 400 * d]))  # the 3D edge per view
    for f in range(n):
        a, b = ends[f]
        nrm = np.array([-(b - a)[1], (b - a)[0]])
        side = (xx - a[0]) * nrm[0] + (yy - a[1]) * nrm[1] > 0
        stack[f] *= np.where(side, 0.8, 1.0)  # the film transmits 80 %
    return sim, tomo, stack


def test_carbon_edge_gives_no_ghost_beads(tmp_path):
    sim, tomo, stack = _with_carbon_edge()
    res = find_fiducials(stack, tomo, FiducialParams())
    truth = sim.truth.beads_3d
    d = np.linalg.norm(res.xyz[:, None, :] - truth[None], axis=2)
    matched = d.min(axis=1) < 3.0
    assert matched.all(), f"{(~matched).sum()} ghost beads"  # precision 1
    assert len(set(d.argmin(axis=1))) == truth.shape[0]  # recall 1
    # each bead's fitted radius (50 Å declared and simulated) and its roundness
    assert res.radius_px is not None and res.anisotropy is not None
    np.testing.assert_allclose(res.radius_px * tomo.pixel_size, 50.0, rtol=0.1)
    assert np.all(res.anisotropy < 0.1)
    # written to the tracks side file's beads block
    p = tmp_path / "tracks.star"
    write_tracks(p, res.tracks, beads=bead_table(res.radius_px, res.anisotropy, res.score, 10.0))
    beads = read_beads(p)
    assert beads is not None and BEADS_BLOCK == "beads"
    np.testing.assert_allclose(beads["tfRadiusAngst"], res.radius_px * 10.0, rtol=1e-9)


def test_appearance_does_not_depend_on_the_batching(tmp_path):
    """The measurement runs in batches bounded by the pages they map (64 KiB per sampled row
    of a memory-mapped stack): any batch size gives the same descriptors."""
    import mrcfile

    from tiltflow.io.mrc import open_stack

    rng = np.random.default_rng(5)
    frames = np.concatenate([_bead_image(6.0, (40.0 + i, 50.0 - i), seed=i) for i in range(7)])
    path = tmp_path / "s.mrc"
    with mrcfile.new(path) as m:
        m.set_data(frames)
    stack = open_stack(path)
    k = 60
    f = rng.integers(0, 7, k)
    x, y = 40.0 + f + rng.normal(0, 0.3, k), 50.0 - f + rng.normal(0, 0.3, k)
    whole = appearance(stack, f, x, y, 6.0, batch=4096)
    for batch in (16, 23):
        part = appearance(stack, f, x, y, 6.0, batch=batch)
        for name in ("radius", "dipole", "quadrupole", "contrast"):
            np.testing.assert_allclose(getattr(part, name), getattr(whole, name), rtol=1e-12)
    assert np.all(np.abs(whole.radius / 6.0 - 1) < 0.1)
