#!/usr/bin/env bash
# Submit one Snakemake job script with sbatch, turning tiltflow's resources into sbatch options.
# Called by the cluster-generic executor as:
#   sbatch-submit.sh --partition P --account A --threads N --mem-mb M --runtime MIN \
#                    --gpu G --gpu-model MODEL --job-name NAME --log PATTERN JOBSCRIPT
# GPU options are added only when G > 0 (a model of "none"/"any"/empty means any GPU).
# Prints the SLURM job id (sbatch --parsable).
set -euo pipefail
partition="" account="" threads=1 mem_mb="" runtime="" gpu=0 gpu_model="" job_name="tiltflow" log=""
while [[ $# -gt 1 ]]; do
    case "$1" in
        --partition) partition="$2"; shift 2 ;;
        --account) account="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --mem-mb) mem_mb="$2"; shift 2 ;;
        --runtime) runtime="$2"; shift 2 ;;
        --gpu) gpu="$2"; shift 2 ;;
        --gpu-model) gpu_model="$2"; shift 2 ;;
        --job-name) job_name="$2"; shift 2 ;;
        --log) log="$2"; shift 2 ;;
        *) echo "sbatch-submit.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
jobscript="${1:?sbatch-submit.sh: no job script given}"
args=(--parsable --job-name="$job_name" --cpus-per-task="$threads")
[[ -n "$partition" && "$partition" != "none" ]] && args+=(--partition="$partition")
[[ -n "$account" && "$account" != "none" ]] && args+=(--account="$account")
[[ -n "$mem_mb" ]] && args+=(--mem="${mem_mb}M")
[[ -n "$runtime" ]] && args+=(--time="$runtime")
if [[ "$gpu" =~ ^[0-9]+$ && "$gpu" -gt 0 ]]; then
    if [[ -n "$gpu_model" && "$gpu_model" != "any" && "$gpu_model" != "none" ]]; then
        args+=(--gres="gpu:${gpu_model}:${gpu}")
    else
        args+=(--gres="gpu:${gpu}")
    fi
fi
if [[ -n "$log" ]]; then
    mkdir -p "$(dirname "$log")"
    args+=(--output="$log")
fi
exec sbatch "${args[@]}" "$jobscript"
