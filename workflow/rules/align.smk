# align: refine every tilt's projection matrix against the fiducial tracks (bundle adjustment).
# Reads the fiducials step's fiducials_{name}.star and tracks_{name}.star. Side files in
# results/align/{name}/: fiducials_{name}.star and tracks_{name}.star (updated), align_{name}.star
# (blocks summary, tilts, beads). The figure align_{name}.png is rule step_figure's (drawn from
# align_{name}.star, off the path to the tomogram set).


rule align:
    input:
        star="results/fiducials/{name}/tomograms.star",
        provenance="results/fiducials/{name}/provenance.json",
        fiducials="results/fiducials/{name}/fiducials_{name}.star",
        tracks="results/fiducials/{name}/tracks_{name}.star",
    output:
        star="results/align/{name}/tomograms.star",
        provenance="results/align/{name}/provenance.json",
        fiducials="results/align/{name}/fiducials_{name}.star",
        tracks="results/align/{name}/tracks_{name}.star",
        report="results/align/{name}/align_{name}.star",
    log:
        rule_log("align", "{name}"),
    benchmark:
        rule_benchmark("align", "{name}")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("align")
    resources:
        **rule_resources("align"),
    params:
        step="align",
        params=step_params("align"),
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/align.py"


rule gather_align:
    input:
        stars=expand("results/align/{name}/tomograms.star", name=TOMOGRAMS),
        provenance=expand("results/align/{name}/provenance.json", name=TOMOGRAMS),
    output:
        star="results/align/tomograms.star",
    log:
        rule_log("gather_align"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("gather_align")
    resources:
        **rule_resources("gather_align"),
    params:
        step="align",
        params=step_params("align"),
        names=TOMOGRAMS,
    script:
        "../scripts/gather.py"
