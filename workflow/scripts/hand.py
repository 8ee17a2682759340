"""Workflow script of rule hand: rlnTomoHand of one tomogram measured from its tilt images."""

from _common import run_tomogram_step


def call(name, out_dir, params):
    from tiltflow.hand import HandParams, run_find_hand

    # the FFTs run on the threads the job reserved unless hand.params.threads says otherwise
    params = {"threads": int(snakemake.threads or 1), **params}  # noqa: F821
    run_find_hand(
        str(snakemake.input.star),  # noqa: F821
        str(out_dir),
        HandParams.from_dict(params),
        names=[name],
        figure=False,  # rule step_figure draws it from hand_{name}.star
    )


def summarize(name, out_dir):
    from tiltflow.io.star import read_star_blocks

    fit = read_star_blocks(snakemake.output.report)["fit"].row(0)  # noqa: F821
    numbers = {
        "status": str(fit["tfStatus"]),
        "rlnTomoHand": f"{float(fit['tfHandIn']):+g} -> {float(fit['tfHandOut']):+g}",
        "slope": (
            f"{float(fit['tfSlope']):+.3f} +- {float(fit['tfSlopeSe']):.3f}"
            if str(fit["tfSlope"]) != "nan"
            else "not measured"
        ),
        "tilts measured": f"{fit['tfTiltsMeasured']} of {fit['tfTiltsSelected']}",
    }
    if str(fit["tfStatus"]) != "determined":
        numbers["why"] = str(fit["tfReason"]).replace("_", " ")
    return numbers


run_tomogram_step(snakemake, call, summarize)  # noqa: F821
