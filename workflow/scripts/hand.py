"""Workflow script of rule hand: rlnTomoHand of one tomogram measured from its tilt images."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.hand import HandParams, run_find_hand

    run_find_hand(
        str(snakemake.input.star), str(out_dir), HandParams.from_dict(params), names=[name]
    )  # noqa: F821


run_tomogram_step(snakemake, call)  # noqa: F821
