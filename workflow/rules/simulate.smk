# Synthetic example data: one IMOD project per name + a RELION 4 import STAR listing them.
# Used when config["tomograms"]["sheet"] is null (the default example).


rule simulate:
    output:
        star=f"{SIMULATED}/import.star",
        provenance=f"{SIMULATED}/provenance.json",
        files=simulated_outputs(),
    log:
        rule_log("simulate"),
    benchmark:
        rule_benchmark("simulate")
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("simulate")
    resources:
        **rule_resources("simulate"),
    params:
        params=config["simulate"]["params"],
        names=config["simulate"]["names"],
    script:
        "../scripts/simulate.py"


# A tab-separated sheet (name, imod_dir, tilt_series, ctfplotter, ...) becomes a RELION 4 import
# STAR (the format relion_tomo_import_tomograms reads; the import jobs read the TSV itself).
rule sheet:
    input:
        tsv=config["tomograms"]["sheet"] or "config/no-sheet.tsv",
    output:
        star="results/sheet/import.star",
    log:
        rule_log("sheet"),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("sheet")
    resources:
        **rule_resources("sheet"),
    script:
        "../scripts/sheet.py"
