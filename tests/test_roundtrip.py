"""simulate -> IMOD files -> import -> project the true beads: within 0.01 px of the truth file.

The simulator renders with the matrices of the true alignment; importing its unperturbed IMOD
files must give the same matrices, whatever the flags, so the true 3D beads project onto the
truth file's 2D positions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tiltflow.geometry import project
from tiltflow.importer import ImportOptions, run_import
from tiltflow.io.tomograms import read_tomogram_set
from tiltflow.simulate import SimulationParams, Truth, simulate_dataset


@pytest.fixture
def in_tmp(tmp_path):
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    "flags, excluded",
    [
        ({}, ()),
        ({"flip_yz": True}, (1, 2, 3)),
        ({"flip_yz": True, "flip_z": True}, (41,)),
        ({}, (5, 6, 7, 20)),
    ],
)
def test_import_of_simulation_reprojects_truth(in_tmp, flags, excluded):
    params = SimulationParams(
        raw_size=(200, 180), n_beads=12, excluded_views=excluded, seed=7, **flags
    )
    import_star = simulate_dataset(params, Path("sim"), ["TS_A", "TS_B"])
    out = Path("import/tomograms.star")
    run_import(import_star, out, ImportOptions(angpix=params.pixel_size, **flags))
    tomo_set = read_tomogram_set(out)  # through the written file, as the next step sees it
    assert tomo_set.names == ["TS_A", "TS_B"]
    for name in tomo_set.names:
        truth = Truth.from_json(Path("sim") / name / "truth.json")
        t = tomo_set[name]
        kept = truth.kept
        assert t.n_tilts == kept.size == truth.n_raw - len(excluded)
        pred = project(t.proj, truth.beads_3d)
        err = np.linalg.norm(pred - truth.beads_2d[kept], axis=-1)
        assert err.max() < 0.01
        np.testing.assert_allclose(t.pre_exposure, truth.pre_exposure[kept], atol=1e-9)
        assert t.size[0] == params.ali_size_eff[0]


def test_unequal_doses_reach_pre_exposure_through_the_mdoc(in_tmp):
    params = SimulationParams(raw_size=(128, 128), n_beads=5, dose_profile="cosine", seed=3)
    import_star = simulate_dataset(params, Path("sim"), ["TS_C"])
    assert "_tfMdocFile" in import_star.read_text()
    t = run_import(
        import_star, Path("imp/tomograms.star"), ImportOptions(angpix=params.pixel_size)
    )["TS_C"]
    truth = Truth.from_json(Path("sim/TS_C/truth.json"))
    assert np.ptp(truth.dose) > 0.5  # really unequal
    np.testing.assert_allclose(t.pre_exposure, truth.pre_exposure, rtol=1e-5, atol=1e-5)


def test_relion_type_suffix_reaches_every_step(in_tmp):
    """RELION's documented ``TS.mrc:mrc`` tilt-series name is kept in the set and every later
    step still finds the stack behind it."""
    from tiltflow.fiducials import run_find_fiducials
    from tiltflow.fiducials.step import FiducialParams
    from tiltflow.ice import IceParams, run_estimate_ice

    params = SimulationParams(raw_size=(160, 160), n_beads=6, seed=2)
    import_star = simulate_dataset(params, Path("sim"), ["TS_M"])
    import_star.write_text(import_star.read_text().replace("TS_M.mrc ", "TS_M.mrc:mrc "))
    t = run_import(
        import_star, Path("imp/tomograms.star"), ImportOptions(angpix=params.pixel_size)
    )["TS_M"]
    assert t.tilt_series == "sim/TS_M/TS_M.mrc:mrc"
    fid = run_find_fiducials(Path("imp/tomograms.star"), Path("fid"), FiducialParams())["TS_M"]
    assert fid.tilt_series == t.tilt_series
    ice = run_estimate_ice(Path("fid/tomograms.star"), Path("ice"), IceParams())["TS_M"]
    assert ice.extra["rlnTomoRelativeIceThickness"] > 0
