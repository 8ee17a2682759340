"""Workflow script of rule ice: per-tilt scale factors from the ice thickness of one tomogram."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.ice import IceParams, run_estimate_ice

    run_estimate_ice(
        str(snakemake.input.star), str(out_dir), IceParams.from_dict(params), names=[name]
    )  # noqa: F821


run_tomogram_step(snakemake, call)  # noqa: F821
