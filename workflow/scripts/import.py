"""Workflow script of rule imod_import: one tilt series of the sheet -> a tomogram-set fragment."""

from _common import fmt_range, run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.importer import ImportOptions, run_import

    run_import(
        str(snakemake.input.sheet),  # noqa: F821 (injected by Snakemake)
        str(snakemake.output.star),  # noqa: F821
        ImportOptions.from_dict(params),
        names=[name],
        culled_dir=str(snakemake.output.culled),  # noqa: F821
    )


def summarize(name, out_dir):
    from tiltflow.io.tomograms import read_tomogram_set

    tomo = read_tomogram_set(snakemake.output.star)[name]  # noqa: F821
    return {
        "tilts": str(tomo.n_tilts),
        "stack": str(tomo.tilt_series),
        "pixel size": f"{tomo.pixel_size:g} Å",
        "defocus U": f"{fmt_range(tomo.defocus_u / 1e4)} µm",
        "pre-exposure": f"{fmt_range(tomo.pre_exposure)} e/Å²",
    }


run_tomogram_step(snakemake, call, summarize, dirs=[snakemake.output.culled])  # noqa: F821
