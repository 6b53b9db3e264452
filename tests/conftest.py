"""Shared test configuration: quiet TensorFlow, locate real MNIST, mark slow tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def mnist_data_dir() -> str | None:
    """The TFDS data dir holding prepared MNIST, from $TFDS_DATA_DIR or ../shared beside the repo."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("TFDS_DATA_DIR"), os.path.join(here, "..", "..", "shared", "tensorflow_datasets")]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, "mnist", "3.0.1", "dataset_info.json")):
            return os.path.abspath(candidate)
    return None


@pytest.fixture
def mnist_dir() -> str:
    """Path to prepared MNIST, or skip saying how to provide it."""
    path = mnist_data_dir()
    if path is None:
        pytest.skip(
            "Real MNIST not found. Set TFDS_DATA_DIR to a folder holding mnist/3.0.1 "
            "(e.g. ../shared/tensorflow_datasets), or run `tfds build mnist` with network access."
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """digits is generated once per session into a temporary cache, never into the user's home."""
    cache = tmp_path_factory.getbasetemp() / "jaxvision_cache"
    monkeypatch.setenv("JAXVISION_CACHE_DIR", str(cache))
