#!/usr/bin/env bash
# Fetch, here, the wheels the GPU machines lack for bench/gpu_check.py (they have JAX, numpy,
# scikit-learn, pyyaml, tabulate, tqdm, Keras's other needs; not Keras, namex, optree) into .whl/
# (git-ignored), for Python 3.12 on x86-64. The device call then carries .whl (bench/gpu_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
py=${PYTHON:-.venv/bin/python}
for spec in keras==3.15.1 namex==0.1.0 optree==0.20.0; do
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$spec"
done
ls -l .whl
