"""Refuse outputs that would overwrite a step's own inputs (issue #11 item 1).

A step writes ``OUT/tomograms.star`` and side files directly in ``OUT``. Pointing ``--o`` at the
directory of its input set (``--o`` equal to the directory of ``--t``) or at a directory holding
any of its inputs (stacks, the previous step's fiducials and tracks files) would replace them, so
the result could never be reproduced and the earlier result is lost. Such an output is an
:class:`~tiltflow.errors.InputError` naming both paths, raised before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tiltflow.errors import InputError


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(p)))


def refuse_output_file_over_inputs(
    out_file: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], option: str = "--o"
) -> None:
    """Raise when ``out_file`` is one of ``inputs``."""
    out = _resolved(out_file)
    for p in inputs:
        if _resolved(p) == out:
            raise InputError(
                out_file,
                f"the output ({option}) is an input of this step ({os.fspath(p)}); writing it would "
                "destroy the input. Choose another output path",
            )


def refuse_output_dir_over_inputs(
    out_dir: str | os.PathLike[str],
    input_set: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "--o",
) -> None:
    """Raise when ``out_dir`` holds the input set or any of ``inputs`` (directly)."""
    out = _resolved(out_dir)
    if _resolved(input_set).parent == out:
        raise InputError(
            out_dir,
            f"the output directory ({option}) holds this step's input set {os.fspath(input_set)}; "
            "writing there would replace the input set and the previous step's side files. Choose "
            "a new output directory",
        )
    for p in inputs:
        if _resolved(p).parent == out:
            raise InputError(
                out_dir,
                f"the output directory ({option}) holds an input of this step ({os.fspath(p)}), which "
                "the step's outputs could replace. Choose a new output directory",
            )


def tomogram_set_inputs(tset: Iterable[object]) -> list[str]:
    """The files a tomogram set refers to (stacks, fiducials and tracks files)."""
    out: list[str] = []
    for tomo in tset:
        stack = str(getattr(tomo, "tilt_series", "")).removesuffix(":mrc")
        if stack:
            out.append(stack)
        extra = getattr(tomo, "extra", {}) or {}
        fid = extra.get("rlnTomoFiducialsStarFile")
        if fid:
            out.append(str(fid))
            fp = Path(str(fid))
            out.append(str(fp.with_name(fp.name.replace("fiducials_", "tracks_", 1))))
    return out


__all__ = [
    "refuse_output_dir_over_inputs",
    "refuse_output_file_over_inputs",
    "tomogram_set_inputs",
]
