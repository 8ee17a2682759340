# hand (optional, config hand.enabled; on in the example): rlnTomoHand measured from the defocus
# gradient of the tilted images; the ice step then reads this step's output. "undetermined" (e.g.
# too few Thon rings at the example's 10 A/px) keeps the input hand. Off: the hand given at import
# stays.
# Side file in results/hand/{name}/: hand_{name}.star (blocks fit, tilts, strips); the figure
# hand_{name}.png is rule step_figure's (drawn from the side file).


rule hand:
    input:
        star=f"results/{upstream_step('hand')}/{{name}}/tomograms.star",
        provenance=f"results/{upstream_step('hand')}/{{name}}/provenance.json",
        # read by the step: the refined fiducials (specimen plane) and the tilt images
        fiducials="results/align/{name}/fiducials_{name}.star",
        stack=lambda wildcards: tilt_series_input(wildcards.name),
    output:
        star="results/hand/{name}/tomograms.star",
        provenance="results/hand/{name}/provenance.json",
        report="results/hand/{name}/hand_{name}.star",
    log:
        rule_log("hand", "{name}"),
    benchmark:
        rule_benchmark("hand", "{name}")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("hand")
    resources:
        **rule_resources("hand"),
    params:
        step="hand",
        params=step_params("hand"),
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/hand.py"


rule gather_hand:
    input:
        stars=expand("results/hand/{name}/tomograms.star", name=TOMOGRAMS),
        provenance=expand("results/hand/{name}/provenance.json", name=TOMOGRAMS),
    output:
        star="results/hand/tomograms.star",
    log:
        rule_log("gather_hand"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("gather_hand")
    resources:
        **rule_resources("gather_hand"),
    params:
        step="hand",
        params=step_params("hand"),
        names=TOMOGRAMS,
    script:
        "../scripts/gather.py"
