"""A TFDS builder for scikit-learn's 8x8 handwritten digits: the offline default dataset.

scikit-learn ships the 1,797 images inside its wheel, so this dataset needs no network. Registering it
as a TFDS builder lets it go through exactly the same pipeline as MNIST or CIFAR-10.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

# A fixed 80/20 split, stratified by class, so train and test have the same class balance on every machine.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) indices into ``sklearn.datasets.load_digits()``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    return train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's digits: 1,797 grey 8x8 images of 0-9, 1,437 train and 360 test."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 80/20 split of sklearn.datasets.load_digits, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="scikit-learn's copy of the UCI optical handwritten digits (8x8, 17 grey levels).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: the data ships with scikit-learn.
        train, test = digits_split_indices()
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, indices: np.ndarray):
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Grey levels are 0..16; stretch them to 0..255 like every other image dataset.
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        for index in indices:
            yield int(index), {"image": images[index], "label": int(digits.target[index])}
