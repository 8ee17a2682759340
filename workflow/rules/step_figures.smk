# step_figure: the align, hand and ice steps' own figures (results/{step}/{name}/{step}_{name}.png),
# drawn from the step's side file alone (tiltflow.qc.step_figures.render_step_figure). The step
# jobs run with figure=False, so the tomogram set never waits for matplotlib (issue #10: the
# figure was most of the align job's time). A failed tomogram's side file is its marker text;
# its figure then says what failed.
#
# A localrule (workflow/Snakefile): one figure is about a second of one core and ~150 MB
# (matplotlib import + savefig), much less than a cluster job's scheduling overhead; on a
# cluster it runs where Snakemake runs (as gather_* and qc_summary do), at most --local-cores at
# a time, while the step jobs go on. Grouping it with the qc job instead would only help when
# qc is enabled and would make every figure wait for the tomogram's last step.


rule step_figure:
    input:
        side="results/{step}/{name}/{step}_{name}.star",
    output:
        png="results/{step}/{name}/{step}_{name}.png",
    log:
        rule_log("step_figure", "{step}/{name}"),
    wildcard_constraints:
        step="|".join(FIGURE_STEPS),
    conda:
        "../envs/tiltflow.yaml"
    threads: rule_threads("step_figure")
    resources:
        **rule_resources("step_figure"),
    params:
        on_error=config["on_tomogram_error"],
    script:
        "../scripts/step_figure.py"
