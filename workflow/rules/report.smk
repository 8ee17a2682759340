# QC: per tomogram the figures of its report page (results/qc/{name}/), a one-page overview PNG
# and the metrics; then one self-contained HTML report over all tomograms (results/qc/summary.html,
# overview + a page per tomogram, figures embedded), its compact form without the figures
# (results/qc/overview.html: Chromium shows no data: URL over 2 MiB, which is how the HTML form of
# Snakemake's report embeds a page) and the summary TSV. Everything a user needs
# is registered with report(): `snakemake --report report.html` (or report.zip) holds the QC
# report, every figure, the align/ice (and hand) steps' own figures and the final STAR files (copied under
# results/qc/, since those rules belong to other files).

from tiltflow.qc.figures import FIGURES, figure_filename

#: the figures of a tomogram page; "truth" only for the simulated example (truth.json exists)
QC_FIGURES = [f for f in FIGURES if f.key != "truth" or config["tomograms"]["sheet"] is None]


rule qc:
    input:
        provenance=expand("results/{step}/{{name}}/provenance.json", step=STEPS),
        stars=expand("results/{step}/{{name}}/tomograms.star", step=STEPS),
        # the steps' own figures (rule step_figure), copied to step_<step>.png
        step_figures=expand(
            "results/{step}/{{name}}/{step}_{{name}}.png", step=FIGURE_STEPS
        ),
    output:
        png=report(
            "results/qc/{name}.png",
            caption="../report/qc_tomogram.rst",
            category="Quality control",
            subcategory="{name}",
            labels={"figure": "00 overview (all figures)"},
        ),
        metrics="results/qc/{name}.json",
        step_align=report(
            "results/qc/{name}/step_align.png",
            caption="../report/step_figure.rst",
            category="Step figures",
            subcategory="{name}",
            labels={"figure": "align step"},
        ),
        step_ice=report(
            "results/qc/{name}/step_ice.png",
            caption="../report/step_figure.rst",
            category="Step figures",
            subcategory="{name}",
            labels={"figure": "ice step"},
        ),
        # the hand step's figure when it runs (config hand.enabled)
        **{
            f"step_{step}": report(
                f"results/qc/{{name}}/step_{step}.png",
                caption="../report/step_figure.rst",
                category="Step figures",
                subcategory="{name}",
                labels={"figure": f"{step} step"},
            )
            for step, enabled in OPTIONAL_STEPS.items()
            if enabled
        },
        fiducials=report(
            "results/qc/final/fiducials/fiducials_{name}.star",
            caption="../report/final_fiducials.rst",
            category="Final tomogram set",
            subcategory="fiducials",
            labels={"tomogram": "{name}"},
        ),
        **{
            f"fig_{f.key}": report(
                f"results/qc/{{name}}/{figure_filename(f.key)}",
                caption=f"../report/figures/{f.key}.rst",
                category="Quality control",
                subcategory="{name}",
                labels={"figure": f"{i + 1:02d} {f.title}"},
            )
            for i, f in enumerate(QC_FIGURES)
        },
    params:
        steps=STEPS,
        thresholds=config["qc"],
        figures=[f.key for f in QC_FIGURES],
        # the simulator's truth of the bundled example (read only if it exists)
        truth=lambda w: (
            f"results/simulated/{w.name}/truth.json" if config["tomograms"]["sheet"] is None else ""
        ),
    log:
        rule_log("qc", "{name}"),
    threads: rule_threads("qc")
    resources:
        **rule_resources("qc"),
    conda:
        "../envs/tiltflow.yaml"
    script:
        "../scripts/qc.py"


rule qc_summary:
    input:
        # the figures (embedded) come from the same qc jobs as the metrics, so these suffice
        metrics=expand("results/qc/{name}.json", name=TOMOGRAMS),
        final="results/ice/tomograms.star",
    output:
        html=report(
            "results/qc/summary.html",
            caption="../report/qc_summary.rst",
            category="Quality control",
            subcategory="QC report",
            labels={"file": "QC report (HTML)"},
        ),
        compact=report(
            "results/qc/overview.html",
            caption="../report/qc_overview.rst",
            category="Quality control",
            subcategory="QC report",
            labels={"file": "QC overview, compact (HTML)"},
        ),
        tsv=report(
            "results/qc/summary.tsv",
            caption="../report/qc_summary_tsv.rst",
            category="Quality control",
            subcategory="QC report",
            labels={"file": "summary table (TSV)"},
        ),
        final=report(
            "results/qc/final/tomograms.star",
            caption="../report/final_set.rst",
            category="Final tomogram set",
            subcategory="RELION 4 tomogram set",
            labels={"file": "tomograms.star"},
        ),
    params:
        names=TOMOGRAMS,
        thresholds=config["qc"],
    log:
        rule_log("qc_summary"),
    threads: rule_threads("qc_summary")
    resources:
        **rule_resources("qc_summary"),
    conda:
        "../envs/tiltflow.yaml"
    script:
        "../scripts/qc_summary.py"
