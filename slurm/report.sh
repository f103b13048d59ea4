#!/usr/bin/env bash
# The job after the array: unit counts per state, then reports/<job>.md from the store (no training).
#
#   sbatch --dependency=afterany:<array job id> slurm/report.sh mnist_dense
#
# afterany: it runs even when some array tasks failed, and says what is missing. Same JOB, STORE
# and VENV conventions as array.sh; REPORTS: the report directory (default reports).
# Run it from the repository root.
#SBATCH --job-name=harness-report
##SBATCH --partition=cpu             # any partition: no GPU needed
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=00:30:00
#SBATCH --output=slurm-%x-%j.out

set -euo pipefail

JOB=${1:-${JOB:-mnist_dense}}
STORE=${STORE:-runs}
VENV=${VENV:-$PWD/.venv}
# shellcheck disable=SC1091
source "$VENV/bin/activate"

harness status "$JOB" --store "$STORE"
exec harness report "$JOB" --store "$STORE" --out "${REPORTS:-reports}"
