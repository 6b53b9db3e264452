"""Benchmarks of jaxvision: training/inference throughput, MFU, PyTorch side by side, input pipeline,
time to accuracy. Entry point: ``python -m benchmarks.run`` (see benchmarks/README.md); the GPU check
``bash benchmarks/gpu_check.sh``; one-off experiments under ``benchmarks/experiments/``."""

import os

if os.environ.get("BENCHMARKS_WITHOUT_TENSORFLOW") == "1":  # set by gpu_check --without-tensorflow
    from benchmarks import _without_tensorflow  # noqa: F401  (blocks TensorFlow's import in this process)
