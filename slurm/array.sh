#!/usr/bin/env bash
# One Slurm array task of a harness job: task i of n runs every unit whose plan index is i mod n
# and appends to its own shard in the store. A requeued or resubmitted task skips the units that
# are already recorded and redoes the one it was killed in (records are whole lines or nothing).
#
#   sbatch --export=ALL,JOB=mnist_dense slurm/array.sh        # JOB from the environment
#   sbatch slurm/array.sh jobs/digits_dense.yaml               # or as the first argument
#   sbatch --array=0-63%8 slurm/array.sh mnist_dense           # 64 shards, 8 at a time
#
# Arguments after JOB go to `harness run` (e.g. --workers 2). `harness slurm submit JOB` sizes the
# array from the job's plan, picks --gres from the partition, and queues a report job after it.
# Run it from the repository root (sbatch starts the job in the directory it was submitted from).
#
# Edit these for your cluster; options given to sbatch override them.
#SBATCH --job-name=harness
#SBATCH --array=0-15                 # shards; any size works, more tasks than units included
##SBATCH --partition=gpu             # your GPU (or CPU) partition (## = off: the default one)
#SBATCH --gres=gpu:1                 # one GPU per task; delete on CPU-only partitions
#SBATCH --cpus-per-task=2            # `harness slurm submit` asks for one per worker thread
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --requeue                    # preempted or failed-node tasks come back and resume
#SBATCH --output=slurm-%x-%A_%a.out

set -euo pipefail

JOB=${1:-${JOB:-mnist_dense}}
[ $# -gt 0 ] && shift
STORE=${STORE:-runs}

# The repository's virtual environment, or the one VENV names (e.g. VENV=$HOME/venvs/harness).
VENV=${VENV:-$PWD/.venv}
# shellcheck disable=SC1091
source "$VENV/bin/activate"

echo "harness: job $JOB, array task ${SLURM_ARRAY_TASK_ID:-?} of ${SLURM_ARRAY_TASK_COUNT:-?}," \
     "restart ${SLURM_RESTART_COUNT:-0}, GPUs ${CUDA_VISIBLE_DEVICES:-none}, host $(hostname)"
# The part of the plan comes from SLURM_ARRAY_TASK_ID/COUNT; GPUs from CUDA_VISIBLE_DEVICES as Slurm sets it
# (workers_per_gpu workers on each). exec: Slurm's signals reach harness directly.
exec harness run "$JOB" --store "$STORE" --no-progress "$@"
