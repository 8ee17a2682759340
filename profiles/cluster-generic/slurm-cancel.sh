#!/usr/bin/env bash
# Cancel jobs for Snakemake's cluster-generic executor (Ctrl-C on snakemake): slurm-cancel.sh JOBID...
set -euo pipefail
ids=()
for id in "$@"; do ids+=("${id%%;*}"); done  # sbatch --parsable may print "id;cluster"
[[ ${#ids[@]} -gt 0 ]] || exit 0
exec scancel "${ids[@]}"
