"""Reading and writing RELION 4 tomogram sets: format, round trip, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.io.star import format_float, format_vector
from tiltflow.io.tomograms import gather_sets, read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet


def make_tomo(name: str = "TS_01", n: int = 3, seed: int = 0) -> Tomogram:
    rng = np.random.default_rng(seed)
    proj = np.tile(np.eye(4), (n, 1, 1))
    proj[:, :3, :] += rng.normal(size=(n, 3, 4))
    return Tomogram(
        name=name,
        tilt_series=f"stacks/{name}.mrc",
        frame_count=n,
        size=(512, 200, 480),
        hand=-1.0,
        optics_group="opticsGroup1",
        pixel_size=1.35,
        voltage=300.0,
        cs=2.7,
        amplitude_contrast=0.1,
        fractional_dose=3.0,
        proj=proj,
        defocus_u=np.full(n, 31234.5),
        defocus_v=np.full(n, 30111.25),
        defocus_angle=np.full(n, -45.5),
        ctf_scale=np.ones(n),
        pre_exposure=np.arange(n) * 3.0,
    )


def test_float_and_vector_format():
    assert format_float(-0.0) == "0"
    assert format_float(1 / 3) == "0.333333333333"
    assert format_vector([1.0, -0.0, 2.5, 1e-20]) == "[1,0,2.5,1e-20]"
    with pytest.raises(ValueError):
        format_float(float("nan"))


def test_round_trip_keeps_every_value(tmp_path):
    s = TomogramSet((make_tomo("TS_01"), make_tomo("TS_02", n=4, seed=1)))
    p = tmp_path / "tomograms.star"
    write_tomogram_set(p, s)
    text = p.read_text()
    assert text.startswith("# version 30001\n")
    assert "_rlnTomoImportFractionalDose #13" in text
    back = read_tomogram_set(p)
    assert back.names == ["TS_01", "TS_02"]
    for a, b in zip(s, back):
        np.testing.assert_allclose(b.proj, a.proj, rtol=1e-11, atol=1e-11)
        np.testing.assert_array_equal(b.defocus_u, a.defocus_u)
        np.testing.assert_array_equal(b.pre_exposure, a.pre_exposure)
        assert b.size == a.size and b.pixel_size == a.pixel_size and b.tilt_series == a.tilt_series


def test_writing_is_byte_identical(tmp_path):
    s = TomogramSet((make_tomo(),))
    write_tomogram_set(tmp_path / "a.star", s)
    write_tomogram_set(tmp_path / "b.star", read_tomogram_set(tmp_path / "a.star"))
    assert (tmp_path / "a.star").read_bytes() == (tmp_path / "b.star").read_bytes()


def test_optional_labels_written_after_required(tmp_path):
    t = make_tomo().replace(
        extra={"rlnTomoRelativeIceThickness": 0.5, "rlnTomoFiducialsStarFile": "f/fid.star"}
    )
    write_tomogram_set(tmp_path / "x.star", TomogramSet((t,)))
    text = (tmp_path / "x.star").read_text()
    assert text.index("_rlnTomoFiducialsStarFile #14") < text.index(
        "_rlnTomoRelativeIceThickness #15"
    )
    back = read_tomogram_set(tmp_path / "x.star")["TS_01"]
    assert back.extra == {
        "rlnTomoFiducialsStarFile": "f/fid.star",
        "rlnTomoRelativeIceThickness": 0.5,
    }


def test_inconsistent_optional_label_refused(tmp_path):
    a = make_tomo("A").replace(extra={"rlnTomoRelativeIceThickness": 0.5})
    with pytest.raises(ValueError, match="not for \\['B'\\]"):
        write_tomogram_set(tmp_path / "x.star", TomogramSet((a, make_tomo("B"))))
    assert not (tmp_path / "x.star").exists()


def test_missing_table_and_bad_vector_are_clear(tmp_path):
    p = tmp_path / "t.star"
    write_tomogram_set(p, TomogramSet((make_tomo(),)))
    text = p.read_text()
    bad = tmp_path / "bad.star"
    bad.write_text(text.replace("data_TS_01", "data_TS_99"))
    with pytest.raises(InputError, match="bad.star.*TS_01.*no data_TS_01 block"):
        read_tomogram_set(bad)
    first_vec = text.split("\n")[
        text.split("\n").index("_rlnMicrographPreExposure #9") + 1
    ].split()[0]
    bad.write_text(text.replace(first_vec, "[1,2,3]", 1))
    with pytest.raises(InputError, match="expected 4 finite numbers"):
        read_tomogram_set(bad)
    with pytest.raises(InputError, match="not found"):
        read_tomogram_set(tmp_path / "nope.star")


def test_duplicate_names_refused():
    with pytest.raises(InputError, match="duplicate"):
        TomogramSet((make_tomo("A"), make_tomo("A")))


def test_gather_lists_missing_tomograms(tmp_path):
    for name in ("A", "B"):
        write_tomogram_set(tmp_path / f"{name}.star", TomogramSet((make_tomo(name),)))
    out = tmp_path / "all.star"
    merged = gather_sets(
        [tmp_path / "A.star", tmp_path / "B.star"], out, missing={"C": "no beads\nfound"}
    )
    assert merged.names == ["A", "B"]
    assert "# missing C: no beads found\n" in out.read_text()
    assert read_tomogram_set(out).names == ["A", "B"]
