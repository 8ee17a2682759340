# fiducials: detect gold beads, track them through the tilts, triangulate 3D positions.
# Side files in results/fiducials/{name}/: fiducials_{name}.star (RELION), tracks_{name}.star.
# Runs on the GPU when config["device"] is gpu or auto (then it requests gpu=1).


rule fiducials:
    input:
        star="results/import/{name}/tomograms.star",
        provenance="results/import/{name}/provenance.json",
        files=fiducials_reads,
    output:
        star="results/fiducials/{name}/tomograms.star",
        provenance="results/fiducials/{name}/provenance.json",
        fiducials="results/fiducials/{name}/fiducials_{name}.star",
        tracks="results/fiducials/{name}/tracks_{name}.star",
    log:
        rule_log("fiducials", "{name}"),
    benchmark:
        rule_benchmark("fiducials", "{name}")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("fiducials")
    resources:
        **rule_resources("fiducials"),
    params:
        step="fiducials",
        params=step_params("fiducials"),
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/fiducials.py"


rule gather_fiducials:
    input:
        stars=expand("results/fiducials/{name}/tomograms.star", name=TOMOGRAMS),
        provenance=expand("results/fiducials/{name}/provenance.json", name=TOMOGRAMS),
    output:
        star="results/fiducials/tomograms.star",
    log:
        rule_log("gather_fiducials"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("gather_fiducials")
    resources:
        **rule_resources("gather_fiducials"),
    params:
        step="fiducials",
        params=step_params("fiducials"),
        names=TOMOGRAMS,
    script:
        "../scripts/gather.py"
