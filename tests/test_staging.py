"""A step writes all of its outputs or none (issue #11 items 2, 8 and 14).

Every step (import, fiducials, align, ice) stages its outputs and moves them into place only
when all were written (:class:`tiltflow.io.staging.OutputTransaction`). These tests fail a run
at every write and every rename in turn and check that the previous outputs stay byte-identical
and that nothing (temporary files, staging directories, the lock, an empty output directory) is
left behind; that what killed runs left is cleaned by the next run; and that a second run into a
locked output directory is refused.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import tiltflow.io.atomic as atomic
import tiltflow.io.mrc as mrc
from tiltflow.align.run import run_align
from tiltflow.cli import main
from tiltflow.errors import InputError
from tiltflow.fiducials import run_find_fiducials
from tiltflow.ice import run_estimate_ice
from tiltflow.importer import ImportOptions, run_import
from tiltflow.io.staging import LOCK_NAME, STAGING_PREFIX, OutputTransaction
from tiltflow.io.tomograms import read_tomogram_set
from tiltflow.sheet import read_sheet, write_import_star

SRC = str(Path(__file__).resolve().parents[1] / "src")


def snapshot(root: Path) -> dict[str, str] | None:
    """Every entry under ``root`` (hidden ones too): file -> sha256, directory -> 'dir'."""
    if not root.exists():
        return None
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def outputs(root: Path) -> dict[str, str] | None:
    """:func:`snapshot`, with ``root`` itself written as ``OUT`` in STAR files (they name the
    files of the set by their paths), to compare runs into different directories."""
    snap = snapshot(root)
    if snap is None:
        return None
    for rel in snap:
        if rel.endswith(".star"):
            text = (root / rel).read_text().replace(root.as_posix() + "/", "OUT/")
            snap[rel] = hashlib.sha256(text.encode()).hexdigest()
    return snap


def hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Two simulated tilt series with excluded views (so import writes culled stacks), imported,
    with fiducials and alignment."""
    root = tmp_path_factory.mktemp("staging")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        argv = ["simulate", "--o", "sim", "--size", "128", "--beads", "8", "--seed", "3"]
        assert main([*argv, "--n", "2", "--exclude", "1,2"]) == 0
        run_import("sim/import.star", "imp/tomograms.star", ImportOptions(angpix=10.0))
        run_find_fiducials("imp/tomograms.star", "fid")
        run_align("fid/tomograms.star", "ali")
        # a sheet whose second row cannot be imported (its IMOD directory does not exist)
        df = read_sheet("sim/import.star")
        df["rlnTomoImportImodDir"][1] = "sim/no_such_dir"
        write_import_star(df, "bad_row2.star")
    finally:
        os.chdir(cwd)
    return root


#: step -> call(out_dir) running it on tomogram TS_01, from the project directory
STEPS: dict[str, Callable[[Path], object]] = {
    "import": lambda out: run_import(
        "sim/import.star", out / "tomograms.star", ImportOptions(angpix=10.0), names=["TS_01"]
    ),
    "fiducials": lambda out: run_find_fiducials("imp/tomograms.star", out, names=["TS_01"]),
    "align": lambda out: run_align("fid/tomograms.star", out, names=["TS_01"]),
    "ice": lambda out: run_estimate_ice("ali/tomograms.star", out, names=["TS_01"]),
}


# ------------------------------------------------------------------------------------------
# (a) a failed import writes no culled stack


def test_failed_second_row_leaves_no_culled_stack_and_no_output_dir(project, monkeypatch):
    monkeypatch.chdir(project)
    with pytest.raises(InputError, match="no_such_dir"):
        run_import("bad_row2.star", "imp_bad/tomograms.star", ImportOptions(angpix=10.0))
    assert not Path("imp_bad/culled/TS_01.mrc").exists()
    assert not Path("imp_bad").exists()


def test_failed_second_row_via_cli_leaves_nothing(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    argv = ["import-imod", "--i", "bad_row2.star", "--o", "imp_cli/tomograms.star"]
    assert main([*argv, "--angpix", "10"]) == 2
    assert "no_such_dir" in capsys.readouterr().err
    assert not Path("imp_cli").exists()


def test_failed_import_over_a_good_output_leaves_it_byte_identical(project, monkeypatch):
    monkeypatch.chdir(project)
    # the earlier, good output (a pixel size within 1 % of the header's: different bytes)
    run_import("sim/import.star", "imp_prev/tomograms.star", ImportOptions(angpix=10.05))
    assert Path("imp_prev/culled/TS_01.mrc").is_file()
    before = snapshot(Path("imp_prev"))
    with pytest.raises(InputError, match="no_such_dir"):
        run_import("bad_row2.star", "imp_prev/tomograms.star", ImportOptions(angpix=10.0))
    assert snapshot(Path("imp_prev")) == before
    # the old set still points at its own culled stacks
    tset = read_tomogram_set("imp_prev/tomograms.star")
    assert tset["TS_01"].tilt_series == "imp_prev/culled/TS_01.mrc"


# ------------------------------------------------------------------------------------------
# (b) fault injection: the disk is full at the k-th write / the k-th rename, for every k


class Faults:
    """Counts atomic writes and renames; raises ENOSPC at the k-th one of ``mode``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mode: str, k: int | None) -> None:
        self.mode, self.k, self.count = mode, k, 0
        real_atomic_path = atomic.atomic_path
        real_replace = os.replace

        def fail_now() -> bool:
            self.count += 1
            return self.count == self.k

        def enospc(path: object) -> OSError:
            return OSError(errno.ENOSPC, "No space left on device", str(path))

        @contextmanager
        def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
            fail = mode == "write" and fail_now()
            with real_atomic_path(target) as tmp:
                yield tmp
                if fail:  # half of the file got written, then the disk was full
                    os.truncate(tmp, tmp.stat().st_size // 2)
                    raise enospc(tmp)

        def replace(src: object, dst: object, **kw: object) -> None:
            if mode == "rename" and fail_now():
                raise enospc(dst)
            real_replace(src, dst, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(atomic, "atomic_path", atomic_path)
        monkeypatch.setattr(mrc, "atomic_path", atomic_path)
        monkeypatch.setattr(os, "replace", replace)


def _fill_with_previous(out: Path, names: list[str]) -> None:
    """An earlier result in ``out``: every file the step writes (other contents) and one more."""
    for rel in names:
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"previous {rel}\n".encode())
    (out / "notes.txt").write_text("not written by the step\n")


@pytest.mark.parametrize("mode", ["write", "rename"])
@pytest.mark.parametrize("step", list(STEPS))
def test_disk_full_at_every_write_leaves_previous_outputs(project, monkeypatch, step, mode):
    monkeypatch.chdir(project)
    base = Path(f"faults_{step}_{mode}")
    # a clean run: how many writes / renames, which files
    with monkeypatch.context() as m:
        counter = Faults(m, mode, None)
        STEPS[step](base / "clean")
    n = counter.count
    written = sorted(k for k, v in snapshot(base / "clean").items() if v != "dir")
    assert "tomograms.star" in written and n >= len(written)
    assert hidden(base / "clean") == []

    for k in range(1, n + 1):
        out = base / f"k{k}"
        _fill_with_previous(out, written)
        before = snapshot(out)
        with monkeypatch.context() as m:
            faults = Faults(m, mode, k)
            with pytest.raises(OSError) as info:
                STEPS[step](out)
        assert info.value.errno == errno.ENOSPC, (step, mode, k)
        assert faults.count >= k
        assert snapshot(out) == before, f"{step}: {mode} {k}/{n} failed, outputs changed"

    # a fresh output directory and a failure at the last rename / write: no directory left
    with monkeypatch.context() as m:
        Faults(m, mode, n)
        with pytest.raises(OSError):
            STEPS[step](base / "fresh")
    assert not (base / "fresh").exists()

    # and without a fault the same directory gets exactly the new outputs
    out = base / "k1"
    STEPS[step](out)
    assert outputs(out) == {**outputs(base / "clean"), "notes.txt": before["notes.txt"]}


# ------------------------------------------------------------------------------------------
# (c) what killed runs left is removed by the next run


@pytest.mark.parametrize("step", list(STEPS))
def test_stale_temporaries_of_killed_runs_are_removed(project, monkeypatch, step):
    monkeypatch.chdir(project)
    out = Path(f"stale_{step}")
    STEPS[step](Path(f"stale_{step}_clean"))
    expected = outputs(Path(f"stale_{step}_clean"))
    out.mkdir()
    (out / ".x.tmp").write_bytes(b"x")
    (out / ".tomograms.star.abcd_123.tmp").write_bytes(b"\0" * 100_000)
    (out / f"{STAGING_PREFIX}12345").mkdir()
    (out / f"{STAGING_PREFIX}12345" / "fiducials_TS_01.star").write_text("half\n")
    (out / LOCK_NAME).write_text("pid 12345 on somewhere\n")  # a killed run's lock (not held)
    if step == "import":
        (out / "culled").mkdir()
        (out / "culled" / ".TS_01.mrc.k2j3h4g5.tmp").write_bytes(b"\0" * 100_000)
    STEPS[step](out)
    assert hidden(out) == []
    assert outputs(out) == expected


def test_sigkill_mid_step_then_rerun_cleans_up(project):
    """A fiducials run killed (SIGKILL) after writing part of its outputs leaves the previous
    outputs as they were; the next run removes its leftovers."""
    out = project / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {SRC!r})
        import tiltflow.fiducials.step as step
        real = step.write_tracks
        def killing(path, tracks, **kw):
            real(path, tracks, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        step.write_tracks = killing
        step.run_find_fiducials("imp/tomograms.star", {str(out)!r}, names=["TS_01"])
        """
    )
    out.mkdir()
    (out / "tomograms.star").write_text("previous\n")
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    left = hidden(out)
    assert any(name.startswith(STAGING_PREFIX) for name in left)  # the killed run's staging
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".")} == before
    cwd = os.getcwd()
    os.chdir(project)
    try:
        run_find_fiducials("imp/tomograms.star", out, names=["TS_01"])
    finally:
        os.chdir(cwd)
    assert hidden(out) == []
    assert sorted(snapshot(out)) == [
        "fiducials_TS_01.star",
        "tomograms.star",
        "tracks_TS_01.star",
    ]


# ------------------------------------------------------------------------------------------
# (d) one run at a time in an output directory


@pytest.mark.parametrize("step", list(STEPS))
def test_a_held_lock_refuses_a_second_run(project, monkeypatch, step):
    monkeypatch.chdir(project)
    out = Path(f"locked_{step}")
    out.mkdir()
    (out / "tomograms.star").write_text("previous\n")
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 4242 on elsewhere\n")
        before = snapshot(out)
        with pytest.raises(InputError) as info:
            STEPS[step](out)
        msg = str(info.value)
        assert str(out) in msg and "another tiltflow run" in msg and "pid 4242" in msg
        assert snapshot(out) == before
    finally:
        os.close(fd)
    STEPS[step](out)  # released: the run goes ahead
    assert hidden(out) == []


def test_a_concurrent_process_holding_the_directory_refuses_the_cli(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    out = project / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                sys.path.insert(0, {SRC!r})
                from tiltflow.io.staging import OutputTransaction
                with OutputTransaction({str(out)!r}):
                    print("locked", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        rc = main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "busy"])
        assert rc == 2
        err = capsys.readouterr().err
        assert "busy" in err and "another tiltflow run" in err and f"pid {holder.pid}" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert hidden(out) == []  # the holder's lock is gone with it
    assert main(["find-fiducials", "--t", "imp/tomograms.star", "--o", "busy"]) == 0


# ------------------------------------------------------------------------------------------
# OutputTransaction itself


def test_main_star_is_moved_last_and_paths_outside_are_staged_beside(tmp_path, monkeypatch):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere" / "stack.mrc"
    moved: list[str] = []
    real_replace = os.replace

    def replace(src, dst, **kw):
        moved.append(Path(dst).name)
        real_replace(src, dst, **kw)

    with OutputTransaction(out) as txn:
        txn.stage(out / "tomograms.star", last=True).write_text("set\n")
        txn.stage(out / "sub" / "a.star").write_text("a\n")
        side = txn.stage(elsewhere)
        assert side.parent.parent == elsewhere.parent and side.parent.name.startswith(".stack.mrc.")
        side.write_text("stack\n")
        txn.stage(out / "never_written.star")
        assert not (out / "tomograms.star").exists()  # nothing in place before the commit
        monkeypatch.setattr(os, "replace", replace)
    assert moved == ["a.star", "stack.mrc", "tomograms.star"]
    assert (out / "sub" / "a.star").read_text() == "a\n"
    assert elsewhere.read_text() == "stack\n"
    assert not (out / "never_written.star").exists()
    assert hidden(out) == [] and hidden(elsewhere.parent) == []


def test_failure_discards_everything_and_removes_new_dirs(tmp_path):
    out = tmp_path / "a" / "b"
    elsewhere = tmp_path / "c" / "stack.mrc"
    with pytest.raises(RuntimeError, match="boom"):
        with OutputTransaction(out) as txn:
            txn.stage(out / "x.star").write_text("x\n")
            txn.stage(elsewhere).write_text("s\n")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
