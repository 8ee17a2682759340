"""The steps' own figures (``align_<name>.png``, ``hand_<name>.png``, ``ice_<name>.png``)
rendered from their side files alone.

The library steps (``run_align``, ``run_find_hand``, ``run_estimate_ice``) draw the same figure
through the same function when called with ``figure=True`` (their default, as the CLI verbs
use them); the workflow's step jobs pass ``figure=False`` so the tomogram set does not wait for
matplotlib, and its ``step_figure`` rule calls :func:`render_step_figure` on the side file.

A side file of a failed tomogram is the marker text of
:func:`tiltflow.provenance.failed_fragment_text` (comment lines, no data blocks); its figure is
the "no <step> result" placeholder of :func:`tiltflow.provenance.write_failed_side_output`
with the recorded reason, as the step jobs wrote before the figures moved out of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from tiltflow.errors import InputError

#: the steps that have a figure, in pipeline order
FIGURE_STEPS: tuple[str, ...] = ("align", "hand", "ice")

#: ``# failed <name> at <step>: <reason>`` (tiltflow.provenance.failed_fragment_text)
_FAILED_LINE = re.compile(r"^# failed (?P<name>\S+) at (?P<step>\S+): (?P<reason>.*)$")


def side_file(step: str, name: str, results: str | os.PathLike[str] = "results") -> Path:
    """``results/<step>/<name>/<step>_<name>.star``: the side file a figure is drawn from."""
    return Path(results) / step / name / f"{step}_{name}.star"


def figure_file(step: str, name: str, results: str | os.PathLike[str] = "results") -> Path:
    """``results/<step>/<name>/<step>_<name>.png``."""
    return Path(results) / step / name / f"{step}_{name}.png"


def _renderer(step: str) -> Callable[[str | os.PathLike[str], str | os.PathLike[str]], None]:
    if step == "align":
        from tiltflow.align.report import render_align_figure

        return render_align_figure
    if step == "hand":
        from tiltflow.hand.step import render_hand_figure

        return render_hand_figure
    if step == "ice":
        from tiltflow.ice.step import render_ice_figure

        return render_ice_figure
    raise ValueError(f"no step figure for step {step!r} (have {', '.join(FIGURE_STEPS)})")


def failed_marker(side_star: str | os.PathLike[str]) -> tuple[str, str, str] | None:
    """``(name, step, reason)`` when ``side_star`` is a failed tomogram's marker file, else
    None."""
    with open(side_star, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _FAILED_LINE.match(line.rstrip("\n"))
            if m:
                return m["name"], m["step"], m["reason"]
            if line.strip() and not line.startswith("#"):
                return None  # data: not a marker
    return None


def render_step_figure(
    step: str,
    side_star: str | os.PathLike[str],
    png: str | os.PathLike[str],
) -> str:
    """Write ``png`` (atomically) from the side file ``side_star`` of ``step`` (align, hand or
    ice). Returns ``"ok"``, or ``"failed"`` when the side file is a failed tomogram's marker
    (the figure then says what failed). A side file that is neither raises InputError."""
    render = _renderer(step)
    if not Path(side_star).is_file():
        raise InputError(side_star, f"file not found (the {step} step's side file)")
    marker = failed_marker(side_star)
    if marker is not None:
        from tiltflow.provenance import write_failed_side_output

        name, failed_step, reason = marker
        write_failed_side_output(png, name, failed_step, reason)
        return "failed"
    try:
        render(side_star, png)
    except (KeyError, IndexError) as exc:
        raise InputError(
            side_star, f"not a {step} side file: block or column {exc} missing"
        ) from None
    return "ok"


def write_figure_failure(
    png: str | os.PathLike[str], name: str, step: str, reason: str
) -> None:
    """The placeholder figure for a figure that could not be drawn (``reason``)."""
    from tiltflow.provenance import write_failed_side_output

    write_failed_side_output(png, name, step, f"figure not drawn: {reason}")


__all__ = [
    "FIGURE_STEPS",
    "failed_marker",
    "figure_file",
    "render_step_figure",
    "side_file",
    "write_figure_failure",
]
