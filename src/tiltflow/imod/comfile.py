"""IMOD command files (``.com``): generic keyword reader plus typed views of ``tilt.com`` and ``newst.com``.

An IMOD ``.com`` file is read by ``vmstopy``/``subm``: lines starting with ``$`` are commands
(``$tilt -StandardInput``), lines starting with ``#`` are comments and every other line is
``KEYWORD value...`` (PIP standard input; the value may be empty for a flag such as
``PERPENDICULAR`` and may be separated from the keyword by ``=``). IMOD writes ``tilt.com``
keywords in capitals (``THICKNESS 300``) and ``newst.com`` keywords in CamelCase
(``SizeToOutputInXandY 1024,1024``); tiltflow keeps the case as written but looks the typed
fields up case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tiltflow.errors import InputError
from tiltflow.io.text import PathLike, parse_float, parse_int, read_text_lines

_KEYWORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:=\s*|\s+|$)(.*)$")
_SEP = re.compile(r"[\s,]+")


class ComKeywords(dict[str, list[str]]):
    """Keyword -> list of values (one per occurrence, file order) of an IMOD ``.com`` file.

    A plain ``dict`` with the keys as written (case-sensitive), plus case-insensitive helpers
    and the line number of every occurrence for error messages.
    """

    def __init__(self, path: PathLike | None = None) -> None:
        super().__init__()
        self.path = path
        #: (keyword as written, value, 1-based line) for every keyword line, in file order
        self.entries: list[tuple[str, str, int]] = []

    def add(self, key: str, value: str, line: int) -> None:
        """Record one ``KEY value`` line."""
        self.setdefault(key, []).append(value)
        self.entries.append((key, value, line))

    def lookup(self, name: str) -> list[tuple[str, int]]:
        """All ``(value, line)`` of keyword ``name`` in any letter case, in file order."""
        low = name.lower()
        return [(v, ln) for k, v, ln in self.entries if k.lower() == low]

    def get_ci(self, name: str) -> list[str]:
        """All values of keyword ``name`` in any letter case (empty list when absent)."""
        return [v for v, _ in self.lookup(name)]

    def last_ci(self, name: str) -> tuple[str, int] | None:
        """The last ``(value, line)`` of keyword ``name`` (IMOD uses the last occurrence), or None."""
        found = self.lookup(name)
        return found[-1] if found else None

    def has_ci(self, name: str) -> bool:
        """Whether keyword ``name`` occurs in any letter case."""
        return bool(self.lookup(name))


def read_comfile(path: PathLike) -> ComKeywords:
    """Read an IMOD ``.com`` file into a :class:`ComKeywords` (a ``dict[str, list[str]]``).

    ``$`` lines (commands, shell conditionals) and ``#`` comment lines are skipped; every other
    non-blank line must start with a keyword. Repeated keywords keep every value in order.
    Raises :class:`~tiltflow.errors.InputError` for a missing/empty file or a line that is not
    ``KEYWORD value``.
    """
    kw = ComKeywords(path)
    for lineno, text in read_text_lines(path, "an IMOD command file (.com)"):
        if text.startswith("$") or text.startswith("#"):
            continue
        m = _KEYWORD.match(text)
        if m is None:
            raise InputError(
                path,
                f"expected 'KEYWORD value' (or a '$' command / '#' comment), found {text!r}",
                line=lineno,
            )
        kw.add(m.group(1), m.group(2).strip(), lineno)
    if not kw.entries:
        raise InputError(
            path,
            "contains no keyword lines (expected an IMOD command file with 'KEYWORD value' lines)",
        )
    return kw


def parse_view_list(
    text: str, path: PathLike | None = None, line: int | None = None
) -> tuple[int, ...]:
    """Expand a 1-based IMOD view list such as ``"1-3,7,10-12"`` into every view it names.

    Ranges ``a-b`` mean every view from ``a`` to ``b`` (either order); commas and/or whitespace
    separate items (``"1 - 3, 7"`` is fine). The result is sorted and unique. An empty list gives
    ``()``. Raises :class:`~tiltflow.errors.InputError` (naming ``path``/``line`` when given) for
    anything that is not a positive integer or range.
    """
    s = re.sub(r"\s*-\s*", "-", text.strip())
    views: set[int] = set()
    for item in (t for t in _SEP.split(s) if t):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if m is None:
            raise InputError(
                path,
                f"expected a 1-based view list like '1-3,7', found item {item!r} in {text.strip()!r}",
                line=line,
            )
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a < 1 or b < 1:
            raise InputError(
                path, f"view numbers are 1-based, found {item!r} in {text.strip()!r}", line=line
            )
        lo, hi = min(a, b), max(a, b)
        views.update(range(lo, hi + 1))
    return tuple(sorted(views))


def _numbers(
    value: str, n_min: int, n_max: int, path: PathLike, line: int, key: str
) -> list[float]:
    tokens = [t for t in _SEP.split(value.strip()) if t]
    if not (n_min <= len(tokens) <= n_max):
        want = str(n_min) if n_min == n_max else f"{n_min} to {n_max}"
        raise InputError(
            path, f"{key}: expected {want} number(s), found {value.strip()!r}", line=line
        )
    return [parse_float(t, path, line, key) for t in tokens]


@dataclass(frozen=True)
class TiltCom:
    """The values of ``tilt.com`` that the RELION 4 import uses (pixel units of the aligned stack).

    ``exclude`` is the union of ``EXCLUDELIST``, ``EXCLUDELIST2`` and ``EXCLUDE`` (1-based raw
    views, every view of a range). For keywords that IMOD reads once, the last occurrence wins.
    """

    thickness: float | None
    full_image: tuple[int, int] | None
    shift: tuple[float, float] = (0.0, 0.0)
    offset: float = 0.0
    x_axis_tilt: float = 0.0
    exclude: tuple[int, ...] = ()
    keywords: ComKeywords = field(default_factory=ComKeywords, compare=False, repr=False)


def read_tilt_com(path: PathLike) -> TiltCom:
    """Read ``tilt.com``: THICKNESS, FULLIMAGE w h, SHIFT x z, OFFSET, XAXISTILT and the exclude lists.

    Missing keywords take IMOD's defaults (SHIFT 0 0, OFFSET 0, XAXISTILT 0, nothing excluded;
    thickness/full image None). Keywords are matched case-insensitively.
    """
    kw = read_comfile(path)

    thickness: float | None = None
    if (hit := kw.last_ci("THICKNESS")) is not None:
        thickness = _numbers(hit[0], 1, 1, path, hit[1], "THICKNESS")[0]
        if thickness <= 0:
            raise InputError(path, f"THICKNESS must be positive, found {hit[0]!r}", line=hit[1])

    full_image: tuple[int, int] | None = None
    if (hit := kw.last_ci("FULLIMAGE")) is not None:
        w, h = _numbers(hit[0], 2, 2, path, hit[1], "FULLIMAGE (width height)")
        if w != int(w) or h != int(h) or w < 1 or h < 1:
            raise InputError(
                path, f"FULLIMAGE: expected two positive integers, found {hit[0]!r}", line=hit[1]
            )
        full_image = (int(w), int(h))

    shift = (0.0, 0.0)
    if (hit := kw.last_ci("SHIFT")) is not None:
        vals = _numbers(hit[0], 1, 2, path, hit[1], "SHIFT (x z)")
        shift = (vals[0], vals[1] if len(vals) > 1 else 0.0)

    offset = 0.0
    if (hit := kw.last_ci("OFFSET")) is not None:
        # OFFSET angle [tilt-axis offset in X]: the first value is the tilt-angle offset
        offset = _numbers(hit[0], 1, 2, path, hit[1], "OFFSET (tilt-angle offset)")[0]

    x_axis_tilt = 0.0
    if (hit := kw.last_ci("XAXISTILT")) is not None:
        x_axis_tilt = _numbers(hit[0], 1, 1, path, hit[1], "XAXISTILT")[0]

    excluded: set[int] = set()
    for key in ("EXCLUDELIST", "EXCLUDELIST2", "EXCLUDE"):
        for value, line in kw.lookup(key):
            excluded.update(parse_view_list(value, path, line))

    return TiltCom(
        thickness=thickness,
        full_image=full_image,
        shift=shift,
        offset=offset,
        x_axis_tilt=x_axis_tilt,
        exclude=tuple(sorted(excluded)),
        keywords=kw,
    )


@dataclass(frozen=True)
class NewstCom:
    """The values of ``newst.com`` that the RELION 4 import uses."""

    size: tuple[int, int] | None
    bin_by_factor: int = 1
    keywords: ComKeywords = field(default_factory=ComKeywords, compare=False, repr=False)


def read_newst_com(path: PathLike) -> NewstCom:
    """Read ``newst.com``: ``SizeToOutputInXandY w,h`` (or ``w h``) and ``BinByFactor`` (default 1).

    Keywords are matched case-insensitively; the last occurrence wins.
    """
    kw = read_comfile(path)

    size: tuple[int, int] | None = None
    if (hit := kw.last_ci("SizeToOutputInXandY")) is not None:
        w, h = _numbers(hit[0], 2, 2, path, hit[1], "SizeToOutputInXandY (width,height)")
        if w != int(w) or h != int(h) or w < 1 or h < 1:
            raise InputError(
                path,
                f"SizeToOutputInXandY: expected two positive integers, found {hit[0]!r}",
                line=hit[1],
            )
        size = (int(w), int(h))

    bin_by = 1
    if (hit := kw.last_ci("BinByFactor")) is not None:
        tokens = [t for t in _SEP.split(hit[0].strip()) if t]
        if len(tokens) != 1:
            raise InputError(
                path, f"BinByFactor: expected one integer, found {hit[0]!r}", line=hit[1]
            )
        bin_by = parse_int(tokens[0], path, hit[1], "BinByFactor")
        if bin_by < 1:
            raise InputError(path, f"BinByFactor must be >= 1, found {hit[0]!r}", line=hit[1])

    return NewstCom(size=size, bin_by_factor=bin_by, keywords=kw)
