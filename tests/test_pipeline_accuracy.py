"""The whole chain against the simulator's truth: simulate -> import -> fiducials -> align.

Unlike the per-step tests (which feed each step ideal inputs), these run every step on the
output of the one before, through the written files, and compare the final model with the truth
file: the refined 3D beads projected by the refined matrices against the true 2D positions
(issue "Alignment", Done when), and the refined matrices of an already-true alignment against
the true ones at the tomogram centre.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tiltflow.align import run_align
from tiltflow.align.params import AlignParams
from tiltflow.fiducials import run_find_fiducials
from tiltflow.fiducials.io import read_fiducials
from tiltflow.fiducials.step import FiducialParams
from tiltflow.geometry import project, tomogram_centre
from tiltflow.importer import ImportOptions, run_import
from tiltflow.simulate import SimulationParams, Truth, simulate_dataset

PERTURBED = dict(
    perturb_tilt_deg=1.0, perturb_rotation_deg=0.5, perturb_shift_px=10.0, perturb_mag=0.01
)


def run_chain(tmp_path: Path, params: SimulationParams, flip_yz: bool):
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        import_star = simulate_dataset(params, Path("sim"), ["TS"])
        run_import(
            import_star,
            Path("import/tomograms.star"),
            ImportOptions(angpix=params.pixel_size, flip_yz=flip_yz),
        )
        run_find_fiducials(Path("import/tomograms.star"), Path("fiducials"), FiducialParams())
        tomo = run_align(Path("fiducials/tomograms.star"), Path("align"), AlignParams())["TS"]
        beads = read_fiducials(Path(tomo.extra["rlnTomoFiducialsStarFile"]), tomo.pixel_size)
        truth = Truth.from_json(Path("sim/TS/truth.json"))
    finally:
        os.chdir(old)
    return tomo, beads, truth


def reprojection_errors(tomo, beads, truth) -> tuple[np.ndarray, int]:
    """Errors (px) of every true bead inside the image, matched to its refined bead."""
    kept = truth.kept
    pred = project(tomo.proj, beads)  # (tilts, refined beads, 2)
    true2d = truth.beads_2d[kept]  # (tilts, true beads, 2)
    mean_dist = np.linalg.norm(pred[:, :, None, :] - true2d[:, None, :, :], axis=-1).mean(axis=0)
    match = mean_dist.argmin(axis=0)
    found = mean_dist[match, np.arange(true2d.shape[1])] < 3.0
    err = np.linalg.norm(pred[:, match[found], :] - true2d[:, found, :], axis=-1)
    return err[truth.visible[kept][:, found]], int(found.sum())


@pytest.mark.parametrize(
    "flip_yz, pixel_size, tilt_step, dose, seed",
    [(False, 10.0, 3.0, 3.0, 3), (True, 8.0, 2.0, 1.5, 4)],
)
def test_perturbed_import_is_recovered(tmp_path, flip_yz, pixel_size, tilt_step, dose, seed):
    params = SimulationParams(
        raw_size=(512, 512),
        pixel_size=pixel_size,
        tilt_step=tilt_step,
        dose_per_tilt=dose,
        n_beads=30,
        seed=seed,
        flip_yz=flip_yz,
        **PERTURBED,
    )
    tomo, beads, truth = run_chain(tmp_path, params, flip_yz)
    err, found = reprojection_errors(tomo, beads, truth)
    assert found == params.n_beads
    assert err.mean() <= 0.25
    assert err.max() <= 1.0


def test_true_alignment_stays_put(tmp_path):
    params = SimulationParams(raw_size=(512, 512), n_beads=30, seed=1)
    tomo, beads, truth = run_chain(tmp_path, params, flip_yz=False)
    centre = np.append(tomogram_centre(tomo.size), 1.0)
    moved = np.linalg.norm(
        (tomo.proj @ centre)[:, :2] - (truth.proj[truth.kept] @ centre)[:, :2], axis=1
    )
    assert moved.max() <= 0.1
    err, _ = reprojection_errors(tomo, beads, truth)
    assert err.mean() <= 0.1
