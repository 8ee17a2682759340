include: "workflow/Snakefile"
workflow.default_target = "all"  # an include never sets Snakemake's default target (9.x), so name it here
