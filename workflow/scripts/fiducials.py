"""Workflow script of rule fiducials: detect, track and triangulate the gold beads of one tomogram."""

from _common import run_tomogram_step, star_column


def call(name, out_dir, params):
    from tiltflow.fiducials import FiducialParams, run_find_fiducials

    # the step runs on the threads the job reserved (config resources.fiducials.threads, or
    # Snakemake's --set-threads), unless fiducials.params.threads says otherwise
    params = {"threads": int(snakemake.threads or 1), **params}  # noqa: F821
    run_find_fiducials(
        str(snakemake.input.star),  # noqa: F821
        str(out_dir),
        FiducialParams.from_dict(params),
        names=[name],
    )


def summarize(name, out_dir):
    import numpy as np

    beads = star_column(snakemake.output.fiducials, "", "rlnOriginXAngst")  # noqa: F821
    tilt = star_column(snakemake.output.tracks, "tracks", "tfTiltIndex")  # noqa: F821
    resid = star_column(snakemake.output.tracks, "tracks", "tfResidual")  # noqa: F821
    mean = float(np.nanmean(resid)) if np.isfinite(resid).any() else float("nan")
    return {
        "beads found": str(beads.size),
        "observations": f"{tilt.size} in {np.unique(tilt).size} tilts",
        "residual of the imported alignment": f"{mean:.3f} px",
    }


run_tomogram_step(snakemake, call, summarize)  # noqa: F821
