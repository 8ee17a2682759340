# ice: per-tilt intensity scale factors from the ice thickness (Beer-Lambert fit). Reads the
# align output, or the hand output when config hand.enabled, the stack and the refined fiducials
# (bead planes). Side file in results/ice/{name}/: ice_{name}.star (blocks fit, tilts); the
# figure ice_{name}.png is rule step_figure's (drawn from the side file).


rule ice:
    input:
        star=f"results/{upstream_step('ice')}/{{name}}/tomograms.star",
        provenance=f"results/{upstream_step('ice')}/{{name}}/provenance.json",
        fiducials="results/align/{name}/fiducials_{name}.star",
        stack=lambda wildcards: tilt_series_input(wildcards.name),
    output:
        star="results/ice/{name}/tomograms.star",
        provenance="results/ice/{name}/provenance.json",
        report="results/ice/{name}/ice_{name}.star",
    log:
        rule_log("ice", "{name}"),
    benchmark:
        rule_benchmark("ice", "{name}")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("ice")
    resources:
        **rule_resources("ice"),
    params:
        step="ice",
        params=step_params("ice"),
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/ice.py"


rule gather_ice:
    input:
        stars=expand("results/ice/{name}/tomograms.star", name=TOMOGRAMS),
        provenance=expand("results/ice/{name}/provenance.json", name=TOMOGRAMS),
    output:
        star="results/ice/tomograms.star",
    log:
        rule_log("gather_ice"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("gather_ice")
    resources:
        **rule_resources("gather_ice"),
    params:
        step="ice",
        params=step_params("ice"),
        names=TOMOGRAMS,
    script:
        "../scripts/gather.py"
