"""Workflow script of rule imod_import: one tilt series of the sheet -> a tomogram-set fragment."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.importer import ImportOptions, run_import

    run_import(
        str(snakemake.input.sheet),  # noqa: F821 (injected by Snakemake)
        str(snakemake.output.star),  # noqa: F821
        ImportOptions.from_dict(params),
        names=[name],
        culled_dir=str(out_dir),
    )


run_tomogram_step(snakemake, call)  # noqa: F821
