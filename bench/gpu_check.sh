#!/usr/bin/env bash
# The GPU check, as one command on a GPU machine that has JAX but no TensorFlow and no internet:
# run `bash bench/gpu_wheels.sh` where pip works, copy the checkout with its .whl/ there, then
# `bash bench/gpu_check.sh` from the repository root. It installs the wheels into /tmp/site,
# prints the GPU, then bench/gpu_check.py's tables (also into $OUT/gpu_check.txt, else /tmp).
# Arguments go to bench/gpu_check.py.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
timeout 540 python3 bench/gpu_check.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.txt"
