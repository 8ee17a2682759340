"""Workflow script of rule ice: per-tilt scale factors from the ice thickness of one tomogram."""

from _common import fmt_range, run_tomogram_step, star_column


def call(name, out_dir, params):
    from tiltflow.ice import IceParams, run_estimate_ice

    # the frames are measured on the threads the job reserved unless ice.params.threads says
    params = {"threads": int(snakemake.threads or 1), **params}  # noqa: F821
    run_estimate_ice(
        str(snakemake.input.star),  # noqa: F821
        str(out_dir),
        IceParams.from_dict(params),
        names=[name],
        figure=False,  # rule step_figure draws it from ice_{name}.star
    )


def summarize(name, out_dir):
    from tiltflow.io.star import read_star_blocks
    from tiltflow.io.tomograms import read_tomogram_set

    fit = read_star_blocks(snakemake.output.report).get("fit")  # noqa: F821
    status = str(fit["tfStatus"][0]) if fit is not None and "tfStatus" in fit else "n/a"
    rel = star_column(snakemake.output.report, "fit", "tfRelativeThickness")  # noqa: F821
    nm = star_column(snakemake.output.report, "fit", "tfThicknessNm")  # noqa: F821
    tomo = read_tomogram_set(snakemake.output.star)[name]  # noqa: F821
    return {
        "fit": status,
        "thickness": f"{nm[0]:.1f} nm (t/λ {rel[0]:.3f})" if nm.size and rel.size else "n/a",
        "scale factors": fmt_range(tomo.ctf_scale),
    }


run_tomogram_step(snakemake, call, summarize)  # noqa: F821
