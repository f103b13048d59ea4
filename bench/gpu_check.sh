#!/usr/bin/env bash
# The device check, as one command on a GPU machine (JAX, no TensorFlow), run from the repository
# root with .whl carried (bench/gpu_wheels.sh fills it here):
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=570)
# Installs the carried wheels into /tmp/site, prints the GPU, then bench/gpu_check.py's tables
# (also into $OUT/gpu_check.txt when $OUT is set).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
timeout 540 python3 bench/gpu_check.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.txt"
