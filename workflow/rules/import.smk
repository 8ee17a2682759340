# import: IMOD alignment (+ CTF + dose) of one tilt series -> RELION 4 tomogram-set fragment.
# Inputs: the sheet (its row is a parameter) and every file of the tilt series the importer
# reads (stack, newst.com, tilt.com, .xf, .tlt, CTF file, order list or mdoc; known at parse
# time, common.smk). The culled stack (tilt.com excludes views) goes to results/import/{name}/culled/.


rule imod_import:
    input:
        sheet=sheet_input(),
        files=import_reads,
    output:
        star="results/import/{name}/tomograms.star",
        provenance="results/import/{name}/provenance.json",
        culled=directory("results/import/{name}/culled"),
    log:
        rule_log("imod_import", "{name}"),
    benchmark:
        rule_benchmark("imod_import", "{name}")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("imod_import")
    resources:
        **rule_resources("imod_import"),
    params:
        step="import",
        params=step_params("import"),
        row=sheet_row,
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/import.py"


rule gather_import:
    input:
        stars=expand("results/import/{name}/tomograms.star", name=TOMOGRAMS),
        provenance=expand("results/import/{name}/provenance.json", name=TOMOGRAMS),
    output:
        star="results/import/tomograms.star",
    log:
        rule_log("gather_import"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("gather_import")
    resources:
        **rule_resources("gather_import"),
    params:
        step="import",
        params=step_params("import"),
        names=TOMOGRAMS,
    script:
        "../scripts/gather.py"
