"""Our STAR reader (tiltflow.io.star.read_star_blocks) against the starfile package, and its
errors, which name the file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from hypothesis import given, settings
from hypothesis import strategies as st

from tiltflow.errors import InputError
from tiltflow.io.star import (
    TEXT_LABELS,
    StarBlock,
    float_column,
    read_star,
    read_star_blocks,
    write_star,
)

#: a tomogram set as RELION 4 writes it, plus the kinds of values other files hold: a
#: key/value block, an empty loop, NaN, negative zero, exponents, names that look like numbers,
#: a quoted value, comment lines and blank lines between the header and the rows
MIXED = """# version 30001

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesName #2
_rlnTomoFrameCount #3
_rlnTomoSizeX #4
_rlnTomoHand #5
_rlnTomoTiltSeriesPixelSize #6
_myNote #7

001 tomograms/001.mrc 2 4000 -1.000000 1.350000 note_a
1e3 tomograms/1e3.mrc:mrc 2 4000 1 2.7e0 "two words"

data_001

loop_
_rlnTomoProjX #1
_rlnDefocusU #2
_rlnCtfScalefactor #3
_tfCount #4
[0.5,0,-0.866,12.5] 25000.5 nan 3
[1,0,0,-0.0] -0 1.000000e-03 -4

data_1e3

loop_
_rlnTomoProjX #1
_rlnDefocusU #2
_rlnCtfScalefactor #3
_tfCount #4

# a comment between the labels and the rows
[1,0,0,0] 1 1 1
[1,0,0,0] 2 0.5 2

data_summary

_tfStatus refined
_tfMeanResidualPx 0.25
_tfNObs 12

data_empty

loop_
_tfBeadIndex #1
_tfObsX #2
"""


def _kind(values: np.ndarray) -> str:
    return {"i": "int", "u": "int", "f": "float"}.get(values.dtype.kind, "text")


def test_blocks_match_starfile(tmp_path: Path) -> None:
    path = tmp_path / "mixed.star"
    path.write_text(MIXED)
    ours = read_star_blocks(path)
    ref = starfile.read(path, always_dict=True, parse_as_string=sorted(TEXT_LABELS))
    assert list(ours) == list(ref) == ["global", "001", "1e3", "summary", "empty"]
    for name, ref_block in ref.items():
        if isinstance(ref_block, dict):
            ref_block = pd.DataFrame([ref_block])
        block = ours[name]
        assert block.columns == tuple(ref_block.columns), name
        assert len(block) == len(ref_block), name
        for label in block.columns:
            got, want = block[label], ref_block[label].to_numpy()
            if len(block):
                assert _kind(got) == _kind(want), (name, label, got.dtype, want.dtype)
            if _kind(got) == "text":
                assert [str(v) for v in got] == [str(v) for v in want], (name, label)
            else:
                np.testing.assert_array_equal(got.astype(float), want.astype(float))
    # the values themselves, by hand
    g = ours["global"]
    assert g["rlnTomoName"].tolist() == ["001", "1e3"]  # names stay text
    assert g["rlnTomoFrameCount"].dtype == np.int64 and g["rlnTomoFrameCount"].tolist() == [2, 2]
    assert g["rlnTomoHand"].tolist() == [-1.0, 1.0] and g["rlnTomoHand"].dtype == np.float64
    assert g["myNote"].tolist() == ["note_a", "two words"]
    assert ours["001"]["tfCount"].tolist() == [3, -4]
    assert np.isnan(ours["001"]["rlnCtfScalefactor"][0])
    assert ours["001"]["rlnTomoProjX"][0] == "[0.5,0,-0.866,12.5]"
    s = ours["summary"]
    assert not s.loop and len(s) == 1
    assert s.row(0) == {"tfStatus": "refined", "tfMeanResidualPx": 0.25, "tfNObs": 12}
    assert len(ours["empty"]) == 0 and ours["empty"].columns == ("tfBeadIndex", "tfObsX")


def test_frames_and_floats(tmp_path: Path) -> None:
    path = tmp_path / "mixed.star"
    path.write_text(MIXED)
    frames = read_star(path)
    assert isinstance(frames["global"], pd.DataFrame)
    assert frames["summary"]["tfNObs"].iloc[0] == 12
    blocks = read_star_blocks(path)
    # the nan of a side file and a text column read as floats: NaN there
    np.testing.assert_array_equal(float_column(blocks["001"], "rlnCtfScalefactor"), [np.nan, 1e-3])
    np.testing.assert_array_equal(
        float_column(frames["001"], "rlnCtfScalefactor"), [np.nan, 1e-3]
    )
    assert np.isnan(float_column(blocks["global"], "myNote")).all()


def test_parse_as_string_keeps_text(tmp_path: Path) -> None:
    path = tmp_path / "a.star"
    path.write_text("data_\n\nloop_\n_tfCode #1\n_tfN #2\n007 1\n010 2\n")
    assert read_star_blocks(path)[""]["tfCode"].tolist() == [7, 10]
    assert read_star_blocks(path, parse_as_string=["tfCode"])[""]["tfCode"].tolist() == [
        "007",
        "010",
    ]


def test_equals() -> None:
    a = StarBlock("a", {"x": np.array([1.0, np.nan]), "n": np.array(["a", "b"], dtype=object)})
    b = StarBlock("a", {"x": np.array([1.0, np.nan]), "n": np.array(["a", "b"], dtype=object)})
    c = StarBlock("a", {"n": b["n"], "x": b["x"]})
    assert a.equals(b) and not a.equals(c)
    assert not a.equals(StarBlock("a", {"x": np.array([1.0, 2.0]), "n": b["n"]}))
    with pytest.raises(ValueError, match="different lengths"):
        StarBlock("bad", {"x": np.zeros(2), "y": np.zeros(3)})


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # a row with one value too many: the line, and how many values for how many labels
        ("data_t\nloop_\n_a #1\n_b #2\n1 2\n1 2 3\n", 6, ["3 values for the 2 labels of data_t"]),
        # a RELION vector written with spaces: which label, and how to write it
        (
            "data_t\nloop_\n_rlnTomoProjX #1\n_b #2\n[1, 0, 0, 0] 2\n",
            5,
            ["_rlnTomoProjX", "[1,0,0,0]", "without spaces"],
        ),
        ("data_t\n_a 1 2\n", 2, ["one value after _a"]),
        ("data_t\nloop_\n_a #1\n1\ndata_t\nloop_\n_a #1\n2\n", 5, ["data_t appears twice"]),
        ("hello\ndata_t\n", 1, ["before the first data_ block"]),
        ("data_t\nloop_\n_a #1\n'unclosed\n", 4, ["unbalanced quotes"]),
        ("data_t\n_a 1\nloop_\n_b #1\n2\n", 3, ["a second loop_"]),
        ("data_t\nstray words\n", 2, ["unexpected line"]),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int,
                                       words: list[str]) -> None:
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_star_blocks(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}" in msg, msg
    for w in words:
        assert w in msg, msg


def test_missing_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_star_blocks(tmp_path / "nope.star")
    with pytest.raises(InputError, match="is a directory"):
        read_star_blocks(tmp_path)
    path = tmp_path / "binary.star"
    path.write_bytes(b"data_\n\xff\xfe\x00\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_star_blocks(path)


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    """A file saved by a Windows editor (BOM, CRLF line ends) reads as the plain file."""
    path = tmp_path / "windows.star"
    path.write_bytes(b"\xef\xbb\xbf# version 30001\r\ndata_t\r\nloop_\r\n_a #1\r\n_b #2\r\n1 x\r\n")
    block = read_star_blocks(path)["t"]
    assert block.columns == ("a", "b") and block["a"].tolist() == [1] and block["b"].tolist() == ["x"]


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:-",
                 min_size=1, max_size=12).filter(lambda t: not t.startswith(("#", "_", "data_", "loop_")))
_columns = st.one_of(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=6),
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=6),
    st.lists(_names, min_size=1, max_size=6),
)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(_columns, min_size=1, max_size=4))
def test_written_tables_read_back(columns: list[list]) -> None:
    """Whatever our writer writes, our reader reads back as the same values (text that looks
    like a number comes back as a number, as in starfile: names are kept text by TEXT_LABELS),
    and starfile reads the same."""
    import tempfile

    n = min(len(c) for c in columns)
    table = {f"tfCol{i}": c[:n] for i, c in enumerate(columns)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.star"
        write_star(path, {"t": table})
        block = read_star_blocks(path)["t"]
        ref = starfile.read(path, always_dict=True)["t"]
    assert block.columns == tuple(table) and len(block) == n
    for label, values in table.items():
        got = block[label]
        if all(isinstance(v, str) for v in values) and got.dtype.kind == "O":
            assert got.tolist() == values
        elif all(isinstance(v, int) for v in values):
            assert got.dtype == np.int64 and got.tolist() == values
        elif all(isinstance(v, float) for v in values):
            # written with 12 significant digits
            np.testing.assert_allclose(got, values, rtol=1e-11, atol=0)
        want = ref[label].to_numpy()
        if got.dtype.kind == "O":
            assert [str(v) for v in want] == got.tolist()
        else:
            np.testing.assert_array_equal(got.astype(float), want.astype(float))


@pytest.mark.parametrize(
    "token",
    ["1_0", "NAN", "nAn", "nan", "NaN", "inf", "-inf", "INF", "Infinity", "+1", "1e3", ".5",
     "5.", "1E-3", "0x10", "\u0661\u0662", "+nan", "1.5e", "e5", "-", "007"],
)
def test_what_is_a_number_as_in_starfile(tmp_path: Path, token: str) -> None:
    """Python's int()/float() accept "1_0", "NAN" and Arabic-Indic digits; STAR readers do not."""
    path = tmp_path / "a.star"
    path.write_text(f"data_t\nloop_\n_a #1\n_b #2\n{token} 1\n2 2\n", encoding="utf-8")
    got = read_star_blocks(path)["t"]["a"]
    want = starfile.read(path, always_dict=True)["t"]["a"].to_numpy()
    assert _kind(got) == _kind(want), (got.dtype, want.dtype)
    if _kind(got) == "text":
        assert got.tolist() == [str(v) for v in want]
    else:
        np.testing.assert_array_equal(got.astype(float), want.astype(float))
