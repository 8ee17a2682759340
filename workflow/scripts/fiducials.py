"""Workflow script of rule fiducials: detect, track and triangulate the gold beads of one tomogram."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.fiducials import FiducialParams, run_find_fiducials

    run_find_fiducials(
        str(snakemake.input.star), str(out_dir), FiducialParams.from_dict(params), names=[name]
    )  # noqa: F821


run_tomogram_step(snakemake, call)  # noqa: F821
