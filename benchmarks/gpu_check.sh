#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): benchmark rows, MNIST time to 99% if carried, and the model
# and train-step tests on flax's own layers, into one JSON file under $OUT (else runs/benchmarks).
# Runs from the source tree with PYTHONPATH=., no TensorFlow or network needed; under 8 minutes on an
# H100/H200. Extra arguments go to the Python entry point, e.g.:
#   bash benchmarks/gpu_check.sh --dry-run
#   JAX_PLATFORMS=cpu bash benchmarks/gpu_check.sh --dry-run --without-tensorflow
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m benchmarks.gpu_check "$@"
