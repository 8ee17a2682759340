#!/usr/bin/env bash
# Job status for Snakemake's cluster-generic executor: prints one of running, success, failed.
# Called as: slurm-status.sh JOBID
# Asks sacct first (it knows finished jobs, and why they ended); while a job is too new for the
# accounting database, or where there is no accounting, scontrol and then squeue. A job SLURM
# ended for time (TIMEOUT), memory (OUT_OF_MEMORY), a node failure, preemption or cancellation
# is "failed": Snakemake then reports it and retries it (profile `retries`) with more memory and
# time. When the scheduler cannot be asked (a command fails), the job is "running" and Snakemake
# asks again at the next status check; a job no command knows is "failed".
set -uo pipefail
jobid="${1:?slurm-status.sh: no job id given}"
jobid="${jobid%%;*}"  # sbatch --parsable may print "id;cluster"

state_of() {
    # map a SLURM job state (first word, e.g. "CANCELLED by 123") to Snakemake's words
    case "${1%% *}" in
        COMPLETED) echo success ;;
        PENDING | RUNNING | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SUSPENDED | \
            CONFIGURING | COMPLETING | STAGE_OUT | SIGNALING | RESV_DEL_HOLD | STOPPED)
            echo running ;;
        FAILED | CANCELLED | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL | PREEMPTED | BOOT_FAIL | \
            DEADLINE | SPECIAL_EXIT | REVOKED)
            echo failed ;;
        *) return 1 ;;
    esac
}

asked=0
if command -v sacct > /dev/null 2>&1; then
    # -X: the allocation itself, not its steps; the last line is the latest requeue
    if out=$(sacct -j "$jobid" -X --noheader --parsable2 --format=State 2> /dev/null); then
        asked=1
        state=$(printf '%s\n' "$out" | sed '/^$/d' | tail -n 1)
        if [[ -n "$state" ]] && state_of "$state"; then exit 0; fi
    fi
fi
if command -v scontrol > /dev/null 2>&1; then
    if out=$(scontrol show job "$jobid" 2> /dev/null); then
        asked=1
        state=$(printf '%s\n' "$out" | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2)
        if [[ -n "$state" ]] && state_of "$state"; then exit 0; fi
    fi
fi
if command -v squeue > /dev/null 2>&1; then
    if out=$(squeue -h -j "$jobid" -o %T 2> /dev/null); then
        asked=1
        state=$(printf '%s\n' "$out" | sed '/^$/d' | head -n 1)
        if [[ -n "$state" ]] && state_of "$state"; then exit 0; fi
    fi
fi
if [[ $asked -eq 0 ]]; then
    echo running  # the scheduler could not be asked now: ask again later
    exit 0
fi
echo "slurm-status.sh: no SLURM command knows job $jobid" >&2
echo failed
