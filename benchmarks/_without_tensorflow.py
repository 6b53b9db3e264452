"""Importing this makes TensorFlow and tensorflow-datasets unimportable in this process.

It simulates, on a machine that has them, a host that has neither (``python -m benchmarks.gpu_check
--without-tensorflow``); as a pytest plugin (``-p benchmarks._without_tensorflow``) it acts before any
test module is imported. ``None`` in ``sys.modules`` makes ``import tensorflow`` raise ImportError and
``importlib.util.find_spec`` return None, as for a package that is not installed.
"""

import sys

MODULES = ("tensorflow", "tensorflow_datasets")


def block() -> None:
    for name in MODULES:
        sys.modules[name] = None  # type: ignore[assignment]


block()
