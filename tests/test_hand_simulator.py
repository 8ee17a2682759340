"""find-hand on the MAIN simulator's images (issue #15 item 4), not only on the hand package's own
generator: simulate -> import-imod -> find-hand, through the written files.

The main simulator (tiltflow.simulate, phase contrast) forms the images by multislice through
depth bands of the true geometry, each band imaged with the view's defocus + hand · px · (depth −
depth of the tomogram centre), with a weak random specimen filling 100 nm of ice, 5 gold beads,
astigmatism and Poisson noise at 3 e/Å² per tilt. Test-sized: 1024² px, ±60° in 12° steps, hand
+1 at 1.5 Å/px and 4 µm, hand −1 at 2 Å/px and 3 µm (the hand package's generator and its tests
are independent of this one). A 1024²
image has 1/16 of the tiles of a 4k one, so the specimen's phase (0.1 rad per px) is twice the
"phase" preset's; at the preset's 0.05 rad the rings are too weak for a 1024² image (the result
is then "undetermined", never a wrong hand; README "Hand", Accuracy).

RELION's hand does not depend on the import's world convention (the depth is row 2 of P, the
flips only rename world axes), so each simulated series is imported without flips, with
--flipYZ and with --flipYZ --flipZ, and must give the same hand every time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tiltflow.hand import STATUS_DETERMINED, STATUS_UNDETERMINED, HandParams, find_hand
from tiltflow.importer import ImportOptions, run_import
from tiltflow.io.mrc import open_stack
from tiltflow.io.tomograms import read_tomogram_set
from tiltflow.model import Tomogram
from tiltflow.simulate import SimulationParams, Truth, simulate_dataset

FLAGS = {"none": (False, False), "flipYZ": (True, False), "flipYZ+flipZ": (True, True)}

REALISTIC = dict(
    raw_size=(1024, 1024),
    pixel_size=1.5,
    defocus_um=4.0,
    tilt_min=-60.0,
    tilt_max=60.0,
    tilt_step=12.0,
    dose_per_tilt=3.0,
    n_beads=5,
    thickness_px=800,
    phase_contrast=True,
    specimen_phase_rms=0.1,
)


@contextmanager
def inside(path: Path) -> Iterator[None]:
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class Series:
    """One simulated series, imported with every flag combination (stack read once)."""

    def __init__(self, root: Path, params: SimulationParams) -> None:
        self.root = root
        self.params = params
        self.tomos: dict[str, Tomogram] = {}
        with inside(root):
            star = simulate_dataset(params, Path("sim"), ["TS"])
            self.truth = Truth.from_json(Path("sim/TS/truth.json"))
            for key, (yz, z) in FLAGS.items():
                out = Path(f"import_{key.replace('+', '_')}/tomograms.star")
                opts = ImportOptions(angpix=params.pixel_size, flip_yz=yz, flip_z=z)
                self.tomos[key] = run_import(star, out, opts)["TS"]
            self.stack = np.asarray(open_stack(self.tomos["none"].tilt_series))


@pytest.fixture(scope="module")
def plus(tmp_path_factory: pytest.TempPathFactory) -> Series:
    # hand +1, the simulator's truth in RELION's GUI-default world (--flipYZ --flipZ)
    p = SimulationParams(**REALISTIC, hand=1.0, seed=11, flip_yz=True, flip_z=True)
    return Series(tmp_path_factory.mktemp("hand_plus"), p)


@pytest.fixture(scope="module")
def minus(tmp_path_factory: pytest.TempPathFactory) -> Series:
    # hand -1, truth without flips, 2 Å/px and 3 µm, another seed
    p = SimulationParams(
        **{**REALISTIC, "pixel_size": 2.0, "defocus_um": 3.0, "thickness_px": 600},
        hand=-1.0,
        seed=12,
    )
    return Series(tmp_path_factory.mktemp("hand_minus"), p)




@pytest.mark.parametrize("which", ["plus", "minus"])
def test_main_simulator_hand_is_found_for_every_import_convention(
    which: str, request: pytest.FixtureRequest
) -> None:
    series: Series = request.getfixturevalue(which)
    hand = series.params.hand
    assert series.truth.hand == hand
    slopes = []
    for key, tomo in series.tomos.items():
        assert tomo.hand == -1.0  # RELION's default --hand: a guess the step replaces
        res = find_hand(tomo, series.stack, HandParams())
        assert res.status == STATUS_DETERMINED, (key, res.reasons, res.slope, res.slope_se)
        assert res.hand_measured == hand and res.hand_out == hand, key
        assert abs(res.slope - hand) <= 0.2, (key, res.slope, res.slope_se)
        assert abs(res.z) >= 10, (key, res.slope, res.slope_se)
        assert res.agreement == 1.0, (key, res.tilt_slope)
        # the tilts from 36° up are measured, each with the right sign
        high = np.abs(res.angle_deg) >= 30
        assert np.array_equal(res.measured, high), (key, res.tilt_notes)
        assert np.all(np.sign(res.tilt_slope[high]) == hand), (key, res.tilt_slope)
        slopes.append(res.slope)
    # the world convention renames axes only: the same depths, the same measurement (up to the
    # matrices' 12 significant digits and the flipZ centre)
    assert np.ptp(slopes) < 1e-4, slopes


def test_main_simulator_through_the_verb(plus: Series, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI on the imported set: rlnTomoHand -1 (import default) becomes the measured +1
    from tiltflow.cli import main
    from tiltflow.io.star import read_star

    monkeypatch.chdir(plus.root)
    assert main(["find-hand", "--t", "import_flipYZ_flipZ/tomograms.star", "--o", "hand"]) == 0
    assert read_tomogram_set("hand/tomograms.star")["TS"].hand == 1.0
    fit = read_star("hand/hand_TS.star")["fit"].iloc[0]
    assert fit["tfStatus"] == "determined" and float(fit["tfHandIn"]) == -1.0
    assert abs(float(fit["tfSlope"]) - 1.0) <= 0.2
    assert Path("hand/hand_TS.png").stat().st_size > 20000


@pytest.mark.parametrize("pixel_size", [8.0, 10.0])
def test_main_simulator_binned_is_undetermined(
    tmp_path: Path, pixel_size: float, recording_stack: type
) -> None:
    # binned data of the same kind (strong specimen, hand +1): too few Thon rings below Nyquist
    p = SimulationParams(
        **{**REALISTIC, "raw_size": (512, 512), "pixel_size": pixel_size, "thickness_px": 200},
        hand=1.0,
        seed=3,
    )
    series = Series(tmp_path, p)
    for key, tomo in series.tomos.items():
        stack = recording_stack(series.stack)
        res = find_hand(tomo, stack, HandParams())  # type: ignore[arg-type]
        assert res.status == STATUS_UNDETERMINED, key
        assert res.hand_measured == 0.0 and res.hand_out == tomo.hand == -1.0
        assert "too few Thon rings" in res.reasons[0] and f"{pixel_size:g} Å/px" in res.reasons[0]
        assert np.all(res.rings[res.selected] < HandParams().min_rings)
        assert stack.reads == []  # nothing to measure: no image is read


def test_nan_in_a_measured_tilt_names_the_stack_and_frame(plus: Series) -> None:
    # find-hand reads only the high tilts, each once; a NaN pixel there is refused by name
    from tiltflow.errors import InputError

    tomo = plus.tomos["none"]
    res = find_hand(tomo, plus.stack, HandParams())
    f = int(np.flatnonzero(res.measured)[-1])  # the last tilt that is measured
    bad = plus.stack.copy()
    bad[f, 3, 5] = np.nan
    with pytest.raises(InputError, match=rf"frame {f + 1} of {bad.shape[0]} .*NaN.*x=5, y=3"):
        find_hand(tomo, bad, HandParams(), stack_name="TS.mrc")
