# export: the final tomogram set for other programs (config `export`). RELION 5 reads
# results/relion5/tomograms.star (# version 50001; per-tilt-series STARs in tilt_series/,
# fiducials in RELION 5's world in fiducials/). `snakemake export_relion5` runs it on demand.
# Reads the final set, every tomogram's refined fiducials and its stack (header).


rule export_relion5:
    input:
        star="results/ice/tomograms.star",
        fiducials=expand("results/align/{name}/fiducials_{name}.star", name=TOMOGRAMS),
        stacks=[p for name in TOMOGRAMS for p in tilt_series_input(name)],
    output:
        directory("results/relion5"),
    log:
        rule_log("export_relion5"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("export_relion5")
    resources:
        **rule_resources("export_relion5"),
    params:
        mirror_z=config["export"]["relion5_mirror_z"],
    script:
        "../scripts/export_relion5.py"
