# QC: one figure per tomogram (beads on a low-dose tilt, residuals per tilt and per bead, refined
# parameter changes, ice fit) and a summary table over all tomograms flagging bad ones. Every
# figure and table is registered with report(), so `snakemake --report report.html` is one page.


rule qc:
    input:
        provenance=expand("results/{step}/{{name}}/provenance.json", step=STEPS),
        stars=expand("results/{step}/{{name}}/tomograms.star", step=STEPS),
    output:
        png=report(
            "results/qc/{name}.png",
            caption="../report/qc_tomogram.rst",
            category="Quality control",
            subcategory="Tomograms",
            labels={"tomogram": "{name}", "figure": "QC"},
        ),
        metrics="results/qc/{name}.json",
    params:
        steps=STEPS,
        thresholds=config["qc"],
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
        metrics=expand("results/qc/{name}.json", name=TOMOGRAMS),
    output:
        tsv=report(
            "results/qc/summary.tsv",
            caption="../report/qc_summary.rst",
            category="Quality control",
            subcategory="Summary",
            labels={"table": "summary (TSV)"},
        ),
        html=report(
            "results/qc/summary.html",
            caption="../report/qc_summary.rst",
            category="Quality control",
            subcategory="Summary",
            labels={"table": "summary (HTML)"},
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
