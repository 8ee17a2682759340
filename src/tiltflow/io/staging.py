"""All-or-nothing outputs of one step (issue #11 items 2, 8 and 14).

A step (import, fiducials, align, ice) writes several files: side files per tomogram and the
tomogram set (``tomograms.star``) that points at them. Writing them one by one in place leaves a
mixed directory when the step fails half-way (a failing tomogram, a full disk, a kill): new
fiducials next to old tracks and an old ``tomograms.star``. :class:`OutputTransaction` makes the
outputs of one step all-or-nothing:

- it takes an exclusive, non-blocking lock on the output directory (``.tiltflow.lock`` in it,
  :func:`fcntl.flock`); a second run into the same directory fails at once with an
  :class:`~tiltflow.errors.InputError` naming the directory instead of racing the first;
- holding the lock, it removes what killed earlier runs left behind: hidden temporary files
  ``.*.tmp`` (the names :mod:`tiltflow.io.atomic` writes) and staging directories
  ``.tiltflow-staging-*``;
- the step writes every output to the path :meth:`OutputTransaction.stage` returns for it, inside
  a staging directory in the output directory (same file system, so moving is a rename);
- on success every staged file is moved onto its final name with :func:`os.replace`, the main
  STAR file (``last=True``) after all the files it refers to; if a move fails, the files already
  moved are put back, so the previous outputs are left as they were;
- on any exception the staging directory is deleted and the previous outputs are untouched
  (byte-identical); an output directory that did not exist before is removed again.

Files outside the output directory (a culled stack named by the import sheet) are staged in a
hidden directory ``.<name>.XXXXXXXX.tmp`` beside their final path, and are moved with the rest.

A killed run (SIGKILL) can leave a half-finished commit: the next run into the directory
cleans up and rewrites every output (``snakemake --rerun-incomplete`` does exactly that).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from tiltflow.errors import InputError

log = logging.getLogger(__name__)

#: the lock file of an output directory
LOCK_NAME = ".tiltflow.lock"
#: prefix of the staging directory of a running step
STAGING_PREFIX = ".tiltflow-staging-"
#: hidden temporary files of :mod:`tiltflow.io.atomic` (``.NAME.XXXXXXXX.tmp``)
TEMP_PATTERN = ".*.tmp"

_LOCK_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _abs(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(p)))


def _remove(p: Path) -> None:
    """Remove a file, link or directory tree; a missing one is fine."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError as exc:  # pragma: no cover - best effort
        log.warning("could not remove %s: %s", p, exc)


def _missing_dirs(p: Path) -> list[Path]:
    """The directories ``mkdir(parents=True)`` would create for ``p``, outermost first."""
    missing: list[Path] = []
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return list(reversed(missing))


def remove_stale(directory: Path, patterns: tuple[str, ...] = (TEMP_PATTERN,)) -> list[Path]:
    """Remove the entries of ``directory`` (not recursive) whose name matches one of
    ``patterns``; return them. Only call while no other run can be writing there."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if any(fnmatch.fnmatchcase(entry.name, pat) for pat in patterns):
            p = Path(entry.path)
            _remove(p)
            removed.append(p)
    if removed:
        log.info("removed %d stale file(s) of an earlier run in %s", len(removed), directory)
    return removed


class OutputTransaction:
    """The outputs of one step in one output directory, written all-or-nothing.

    Use as a context manager::

        with OutputTransaction(out_dir) as txn:
            write_fiducials(txn.stage(out_dir / "fiducials_TS_01.star"), ...)
            write_tomogram_set(txn.stage(out_dir / "tomograms.star", last=True), tset)

    Paths written into STAR files are the final paths (``out_dir / ...``), never the staged
    ones. Leaving the block normally commits (moves every staged file into place, ``last`` ones
    at the end); an exception discards everything staged and re-raises. A staged path that the
    step did not write is not committed (the old file of that name, if any, stays).
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self._out_abs = _abs(out_dir)
        self._created: list[Path] = []  # directories this transaction created, outermost first
        self._lock_fd: int | None = None
        self._staging: Path | None = None
        self._staged: dict[Path, tuple[Path, bool]] = {}  # final (abs) -> (staged, last)
        self._side: dict[Path, Path] = {}  # final (abs, outside out_dir) -> its staging dir
        self._created_external: list[Path] = []  # directories made for files outside out_dir
        self._cleaned: set[Path] = set()
        self._active = False
        self._committed = False

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> OutputTransaction:
        self._make_out_dir()
        try:
            self._lock()
            remove_stale(self._out_abs, (TEMP_PATTERN, STAGING_PREFIX + "*"))
            self._cleaned.add(self._out_abs)
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self._out_abs))
        except BaseException:
            self._finish(failed=True)
            raise
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        try:
            if not failed:
                try:
                    self.commit()
                except BaseException:
                    failed = True
                    raise
        finally:
            self._finish(failed)

    # ------------------------------------------------------------------ staging

    @property
    def staging_dir(self) -> Path:
        """The staging directory (inside the output directory) of this run."""
        if self._staging is None:
            raise RuntimeError("OutputTransaction used outside its with block")
        return self._staging

    def stage(self, final: str | os.PathLike[str], *, last: bool = False) -> Path:
        """The path to write ``final`` to; it is moved onto ``final`` at commit.

        ``last=True`` marks the main STAR file of the step (``tomograms.star``), moved after
        every other file. Staging the same final path twice returns the same staged path.
        """
        if not self._active:
            raise RuntimeError("OutputTransaction.stage called outside its with block")
        final_abs = _abs(final)
        if final_abs in self._staged:
            staged, was_last = self._staged[final_abs]
            self._staged[final_abs] = (staged, was_last or last)
            return staged
        try:
            rel: Path | None = final_abs.relative_to(self._out_abs)
        except ValueError:
            rel = None
        if rel is None:
            # outside the output directory (not locked): clean only this file's own stale
            # temporaries, stage in a hidden directory beside it
            parent = final_abs.parent
            missing = _missing_dirs(parent)
            parent.mkdir(parents=True, exist_ok=True)
            self._created_external.extend(missing)
            remove_stale(parent, (f".{final_abs.name}.*.tmp",))
            side = Path(tempfile.mkdtemp(prefix=f".{final_abs.name}.", suffix=".tmp", dir=parent))
            self._side[final_abs] = side
            staged = side / final_abs.name
        elif (
            rel == Path(".") or rel.parts[0] == LOCK_NAME or rel.parts[0].startswith(STAGING_PREFIX)
        ):
            raise ValueError(f"cannot stage {final}: not an output file of {self.out_dir}")
        else:
            staged = self.staging_dir / "new" / rel
            staged.parent.mkdir(parents=True, exist_ok=True)
            # stale temporaries of killed runs in a sub-directory we write into (culled/)
            if final_abs.parent not in self._cleaned:
                self._cleaned.add(final_abs.parent)
                remove_stale(final_abs.parent)
        self._staged[final_abs] = (staged, last)
        return staged

    def _backup_path(self, final: Path) -> Path:
        """Where the previous version of ``final`` is kept until the commit is complete."""
        side = self._side.get(final)
        if side is not None:
            return side / ".previous"
        backup = self.staging_dir / "old" / final.relative_to(self._out_abs)
        backup.parent.mkdir(parents=True, exist_ok=True)
        return backup

    def commit(self) -> None:
        """Move every staged file onto its final path (``last`` ones at the end).

        The previous version of each file is kept (as a hard link, or renamed where links are
        not possible) until all moves succeeded; if one fails, every file moved so far is put
        back and the error re-raised. Called when the ``with`` block ends without an exception;
        calling it earlier ends the staging (a second call does nothing).
        """
        if self._committed:
            return
        self._committed = True
        self._active = False
        order = [f for f, (_, last) in self._staged.items() if not last]
        order += [f for f, (_, last) in self._staged.items() if last]
        done: list[tuple[Path, Path | None]] = []
        made_dirs: list[Path] = []
        try:
            for final in order:
                staged = self._staged[final][0]
                if not staged.is_file():
                    continue
                for d in _missing_dirs(final.parent):
                    d.mkdir()
                    made_dirs.append(d)
                backup: Path | None = None
                if os.path.lexists(final):
                    backup = self._backup_path(final)
                    try:
                        os.link(final, backup, follow_symlinks=False)
                    except OSError:
                        os.replace(final, backup)
                done.append((final, backup))
                os.replace(staged, final)
        except BaseException:
            for final, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, final)
                    else:
                        final.unlink(missing_ok=True)
                except OSError as exc:  # pragma: no cover - cannot do better
                    log.error("could not restore %s after a failed commit: %s", final, exc)
            for d in reversed(made_dirs):
                try:
                    d.rmdir()
                except OSError:  # pragma: no cover
                    pass
            raise

    # ------------------------------------------------------------------ lock and clean-up

    def _make_out_dir(self) -> None:
        self._created = _missing_dirs(self._out_abs)
        self._out_abs.mkdir(parents=True, exist_ok=True)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            log.warning("no file locking on this platform; not locking %s", self.out_dir)
            return
        path = self._out_abs / LOCK_NAME
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = ""
                try:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                except OSError:  # pragma: no cover
                    pass
                os.close(fd)
                if exc.errno in _LOCK_BUSY:
                    by = f" ({holder})" if holder else ""
                    raise InputError(
                        self.out_dir,
                        f"another tiltflow run is writing into this output directory{by} "
                        f"(it holds {path.name}); wait until it has finished, or choose another "
                        "output directory",
                    ) from None
                log.warning("cannot lock %s (%s); going on without a lock", path, exc)
                return
            # the holder before us may have removed the file after we opened it: lock the file
            # that is there now, not a deleted one
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            self._lock_fd = fd
            return
        raise InputError(self.out_dir, f"could not lock {path}")  # pragma: no cover

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            (self._out_abs / LOCK_NAME).unlink(missing_ok=True)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _finish(self, failed: bool) -> None:
        """Remove the staging directories, release the lock; after a failure remove the output
        directories this transaction created (when nothing else is in them)."""
        self._active = False
        try:
            if self._staging is not None:
                _remove(self._staging)
                self._staging = None
            for side in self._side.values():
                _remove(side)
            self._side = {}
        finally:
            self._unlock()
            if failed:
                for d in [*reversed(self._created_external), *reversed(self._created)]:
                    try:
                        d.rmdir()
                    except OSError:
                        pass


__all__ = ["LOCK_NAME", "STAGING_PREFIX", "TEMP_PATTERN", "OutputTransaction", "remove_stale"]
