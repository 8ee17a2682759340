"""Workflow script of rule align: refine the projection matrices of one tomogram against its beads."""

from _common import run_tomogram_step, star_column


def call(name, out_dir, params):
    from tiltflow.align import AlignParams, run_align

    # the figure is rule step_figure's, drawn from align_{name}.star
    run_align(
        str(snakemake.input.star),  # noqa: F821
        str(out_dir),
        AlignParams.from_dict(params),
        names=[name],
        figure=False,
    )


def summarize(name, out_dir):
    import numpy as np

    before = star_column(snakemake.input.tracks, "tracks", "tfResidual")  # noqa: F821
    after = star_column(snakemake.output.report, "summary", "tfMeanResidualPx")  # noqa: F821
    outliers = star_column(snakemake.output.report, "summary", "tfNOutliers")  # noqa: F821
    b = float(np.nanmean(before)) if np.isfinite(before).any() else float("nan")
    a = float(after[0]) if after.size else float("nan")
    return {
        "mean bead residual": f"{b:.3f} -> {a:.3f} px",
        "outliers": str(int(outliers[0])) if outliers.size else "n/a",
    }


run_tomogram_step(snakemake, call, summarize)  # noqa: F821
