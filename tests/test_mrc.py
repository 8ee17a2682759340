"""MRC stack I/O: header, (memory-mapped) reading, atomic and deterministic writing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tiltflow.errors import InputError
from tiltflow.io.mrc import StackHeader, read_header, read_stack, write_stack

FIXTURES = (
    Path(__file__).parent / "data" / "fixtures"
)  # copies of ../shared/fixtures (see its README)
TS_ST = FIXTURES / "teamtomo__etomofiles" / "test_data" / "TS_001" / "TS_001.st"


def sha1(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def test_fixture_header_and_stack() -> None:
    assert TS_ST.stat().st_size == 1184  # 1024-byte header + 40 float32
    h = read_header(TS_ST)
    assert h == StackHeader(nx=1, ny=1, nz=40, pixel_size=None)  # cell = 0 -> unknown pixel size
    s = read_stack(TS_ST)
    assert s.shape == (40, 1, 1) and s.dtype == np.float32
    assert isinstance(s, np.memmap)  # memory-mapped, not copied
    raw = np.frombuffer(TS_ST.read_bytes()[1024:], dtype="<f4").reshape(40, 1, 1)
    np.testing.assert_array_equal(s, raw)


def test_write_read_roundtrip(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.float64).reshape(3, 4, 5) * 0.5 - 7.0
    out = tmp_path / "sub" / "stack.mrc"
    write_stack(out, data, 1.35)
    h = read_header(out)
    assert (h.nx, h.ny, h.nz) == (5, 4, 3)
    assert h.pixel_size == pytest.approx(1.35, rel=1e-6)  # stored as float32 in the cell
    s = read_stack(out)
    assert s.dtype == np.float32 and s.shape == (3, 4, 5)
    np.testing.assert_array_equal(s, data.astype(np.float32))
    assert s[2, 1, 3] == 17.0  # frame 2, y 1, x 3: flat index 48 -> 48 * 0.5 - 7
    with mrcfile.open(out) as m:  # a valid MRC for mrcfile's strict mode, an image stack
        assert m.header.ispg == 0 and m.is_image_stack()
        assert m.get_labels() == ["tiltflow"]
        assert float(m.header.dmin) == -7.0 and float(m.header.dmax) == 22.5
    # no temporary file left beside the output
    assert sorted(os.listdir(out.parent)) == ["stack.mrc"]


def test_write_2d_becomes_one_frame_and_none_pixel_size(tmp_path: Path) -> None:
    img = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)
    out = tmp_path / "img.st"
    write_stack(out, img, None)
    assert read_header(out) == StackHeader(nx=3, ny=2, nz=1, pixel_size=None)
    s = read_stack(out)
    assert s.shape == (1, 2, 3)
    np.testing.assert_array_equal(s[0], img)


def test_write_is_deterministic(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(2, 6, 7)).astype(np.float32)
    a, b = tmp_path / "a.mrc", tmp_path / "b.mrc"
    write_stack(a, data, 2.0)
    os.utime(a, (0, 0))
    write_stack(b, data, 2.0)
    assert sha1(a) == sha1(b)
    assert b"mrcfile.py" not in a.read_bytes()[:1024]  # no "Created by mrcfile.py <time>" label
    write_stack(a, data, 2.0)  # overwriting gives the same bytes again
    assert sha1(a) == sha1(b)


def test_write_failure_leaves_target_untouched(tmp_path: Path) -> None:
    out = tmp_path / "keep.mrc"
    write_stack(out, np.ones((1, 2, 2)), 1.0)
    before = sha1(out)
    with pytest.raises(ValueError):
        write_stack(out, np.ones((2, 2, 2, 2)), 1.0)
    with pytest.raises(ValueError):
        write_stack(out, np.ones((1, 2, 2)), -1.0)
    assert sha1(out) == before and sorted(os.listdir(tmp_path)) == ["keep.mrc"]


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float16])
def test_read_other_modes_as_float32(tmp_path: Path, dtype: type) -> None:
    data = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], dtype=dtype)
    p = tmp_path / "m.mrc"
    with mrcfile.new(p) as m:
        m.set_data(data)
    s = read_stack(p)
    assert s.dtype == np.float32 and s.shape == (2, 2, 2)
    np.testing.assert_array_equal(s, data.astype(np.float32))


def test_read_big_endian(tmp_path: Path) -> None:
    data = np.arange(6, dtype=">f4").reshape(1, 2, 3)
    p = tmp_path / "be.mrc"
    with mrcfile.new(p) as m:
        m.set_data(data)
    np.testing.assert_array_equal(read_stack(p), np.arange(6, dtype=np.float32).reshape(1, 2, 3))


def test_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="none.mrc.*not found"):
        read_header(tmp_path / "none.mrc")
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"this is not an MRC file" * 100)
    with pytest.raises(InputError, match="junk.mrc.*not a valid MRC"):
        read_header(junk)
    with pytest.raises(InputError, match="junk.mrc.*not a valid MRC"):
        read_stack(junk)
    short = tmp_path / "short.mrc"
    short.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="short.mrc"):
        read_header(short)
    # valid header, data cut off
    cut = tmp_path / "cut.mrc"
    write_stack(cut, np.zeros((4, 8, 8)), 1.0)
    cut.write_bytes(cut.read_bytes()[: 1024 + 100])
    with pytest.raises(InputError, match="cut.mrc.*truncated"):
        read_stack(cut)
    with pytest.raises(InputError, match="directory"):
        read_stack(tmp_path)


def test_relion_type_suffix_is_dropped(tmp_path):
    from tiltflow.io.mrc import stack_file

    assert stack_file("a/TS_01.st:mrc") == Path("a/TS_01.st")
    assert stack_file("TS_01.mrcs:mrcs") == Path("TS_01.mrcs")
    assert stack_file("TS_01.mrc") == Path("TS_01.mrc")
    p = tmp_path / "s.st"
    write_stack(p, np.zeros((2, 3, 4), np.float32), 1.5)
    assert read_header(f"{p}:mrc").nz == 2
    assert read_stack(f"{p}:mrc").shape == (2, 3, 4)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_release_pages_drops_resident_memory_of_a_read_stack(tmp_path):
    """Reading a memory-mapped stack a tilt at a time must not keep it all resident (#10)."""
    import mmap

    from tiltflow.io.mrc import read_stack, release_pages, write_stack

    if not hasattr(mmap, "MADV_DONTNEED"):
        pytest.skip("no madvise")
    p = tmp_path / "big.mrc"
    write_stack(p, np.ones((16, 1024, 1024), np.float32), 1.0)  # 64 MiB
    st = read_stack(p)
    view = np.asarray(st)  # a plain ndarray view of the map, as steps make
    before = _rss_mb()
    total = sum(float(np.array(view[f]).sum()) for f in range(16))
    assert total == 16 * 1024 * 1024
    touched = _rss_mb()
    release_pages(view)
    after = _rss_mb()
    assert touched - before > 40  # the pages read are resident ...
    assert touched - after > 40  # ... until released
    np.testing.assert_array_equal(view[3, :2, :2], 1.0)  # and still readable
