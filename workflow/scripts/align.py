"""Workflow script of rule align: refine the projection matrices of one tomogram against its beads."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.align import AlignParams, run_align

    run_align(str(snakemake.input.star), str(out_dir), AlignParams.from_dict(params), names=[name])  # noqa: F821


run_tomogram_step(snakemake, call)  # noqa: F821
