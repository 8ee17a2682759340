"""Matching .tlt angles to order lists / mdoc sections (issue #11 item 3, issue #9 tilt offset)."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.io.angle_match import match_angles
from tiltflow.io.mdoc import MdocAcquisition, pre_exposure_from_mdoc
from tiltflow.io.order_list import pre_exposure_from_order


def dose_symmetric(step: float, n_half: int) -> np.ndarray:
    """Order list rows (index, angle) of a dose-symmetric scheme, chronological."""
    angles = [0.0]
    for k in range(1, n_half + 1):
        angles += [k * step, -k * step]
    return np.column_stack([np.arange(1, len(angles) + 1), angles]).astype(float)


@pytest.mark.parametrize("offset", [1.0, -1.0, 0.9, 1.4])
def test_tilt_offset_gives_distinct_pre_exposures(offset):
    # 61 tilts, 2° step: an offset of ~half the step made nearest-angle matching give several
    # tilts the same entry (issue #9: six tilts with the same pre-exposure)
    order = dose_symmetric(2.0, 30)
    tlt = np.sort(order[:, 1]) + offset
    pre = pre_exposure_from_order(tlt, order, 3.0, "order.csv")
    assert np.unique(pre).size == tlt.size
    # truth: the chronological rank of each nominal angle
    rank = {a: i for i, a in enumerate(order[:, 1])}
    expected = np.array([rank[a] for a in np.sort(order[:, 1])]) * 3.0
    np.testing.assert_array_equal(pre, expected)


def test_offset_with_excluded_views_record_longer_than_tlt():
    order = dose_symmetric(3.0, 20)  # 41 entries
    nominal = np.sort(order[:, 1])
    keep = np.ones(nominal.size, bool)
    keep[[0, 1, 40]] = False  # .tlt lists only the 38 kept views
    tlt = nominal[keep] + 1.2
    m = match_angles(tlt, order[:, 1], "order.csv")
    assert m.offset_deg == pytest.approx(1.2, abs=1e-9)
    np.testing.assert_allclose(order[m.entry, 1], nominal[keep])


def test_no_offset_equals_nearest_matching():
    order = dose_symmetric(3.0, 20)
    rng = np.random.default_rng(0)
    tlt = np.sort(order[:, 1]) + rng.uniform(-0.3, 0.3, 41)
    m = match_angles(tlt, order[:, 1], "o.csv")
    nearest = np.argmin(np.abs(tlt[:, None] - order[None, :, 1]), axis=1)
    assert abs(m.offset_deg) < 0.3
    np.testing.assert_array_equal(m.entry, nearest)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("short", "20 entries for 41 tilts"),
        ("one", "1 entries for 41 tilts"),
        ("halved", "matches no entry"),
        ("offset30", "constant +30.00°"),
        ("duplicate", "matches no entry"),
        ("zeros", "matches no entry"),
    ],
)
def test_angles_that_match_no_view_are_refused(case, needle):
    order = dose_symmetric(3.0, 20)
    tlt = np.sort(order[:, 1]).copy()
    if case == "short":
        order = order[:20]
    elif case == "one":
        order = order[:1]
    elif case == "halved":
        order = order.copy()
        order[:, 1] *= 0.5
    elif case == "offset30":
        tlt = tlt + 30.0
    elif case == "duplicate":
        tlt[10] = tlt[11]
    elif case == "zeros":
        tlt[:] = 0.0
    with pytest.raises(InputError) as err:
        pre_exposure_from_order(tlt, order, 3.0, "my/order.csv")
    assert "my/order.csv" in str(err.value) and needle in str(err.value)


def test_mdoc_sections_matched_one_to_one_with_offset():
    order = dose_symmetric(2.0, 10)  # 21 sections, chronological
    acq = MdocAcquisition(
        tilt_angles=order[:, 1],
        doses=np.full(21, 2.0),
        z_values=np.arange(21),
        pixel_size=None,
        by_datetime=True,
    )
    tlt = np.sort(order[:, 1]) - 1.0
    pre = pre_exposure_from_mdoc(tlt, acq, 2.0, "TS.mdoc")
    assert np.unique(pre).size == 21
    with pytest.raises(InputError, match="TS.mdoc.*20 sections for 21 tilts"):
        short = MdocAcquisition(order[:20, 1], np.full(20, 2.0), np.arange(20), None, True)
        pre_exposure_from_mdoc(tlt, short, 2.0, "TS.mdoc")


@pytest.mark.parametrize("seed", [3, 5, 6])
def test_refined_angles_scattered_by_a_degree_at_a_2_degree_step_import(tmp_path, monkeypatch, seed):
    """61 tilts at 2°, the .tlt's angles perturbed by up to 1° against the nominal ones of the
    .defocus and the order list (IMOD's refined tilt angles): imported, each tilt with its own
    pre-exposure and defocus. Half a step (1°) of tolerance refused these seeds."""
    import json
    from pathlib import Path

    from tiltflow.importer import ImportOptions, run_import
    from tiltflow.io.tomograms import read_tomogram_set
    from tiltflow.simulate import SimulationParams, simulate_dataset
    from tiltflow.simulate.truth import Truth

    monkeypatch.chdir(tmp_path)
    p = SimulationParams(
        raw_size=(128, 128), pixel_size=10.0, tilt_step=2.0, n_beads=4, perturb_tilt_deg=1.0,
        seed=seed,
    )
    simulate_dataset(p, Path("sim"), ["TS_01"])
    run_import("sim/import.star", "import/tomograms.star", ImportOptions(angpix=10.0))
    tomo = read_tomogram_set("import/tomograms.star")["TS_01"]
    truth = Truth.from_dict(json.loads(Path("sim/TS_01/truth.json").read_text()))
    assert tomo.n_tilts == 61
    np.testing.assert_allclose(tomo.pre_exposure, truth.pre_exposure, atol=1e-6)
    assert np.unique(tomo.pre_exposure).size == 61
