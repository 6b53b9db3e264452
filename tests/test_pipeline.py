"""The TFDS input pipeline: splits, normalisation, shuffling, padded evaluation, errors."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxvision import data


@pytest.fixture(scope="module")
def digits():
    return data.load_splits("digits", batch_size=100, eval_batch_size=64, validation_fraction=0.1, seed=0)


def test_digits_split_sizes_and_metadata(digits):
    meta = digits.meta
    assert (meta.num_train + meta.num_validation, meta.num_test) == (1437, 360)
    assert meta.num_validation == round(0.1 * 1437)
    assert meta.image_shape == (8, 8, 1) and meta.num_classes == 10
    assert digits.steps_per_epoch == meta.num_train // 100


def test_evaluation_counts_every_test_example_exactly_once(digits):
    raw, _ = data.load("digits", "test")
    expected = collections.Counter(int(label) for _, label in raw.as_numpy_iterator())
    seen = collections.Counter()
    shapes = set()
    for batch in digits.eval_batches("test"):
        shapes.add(batch.images.shape)
        real = batch.mask.astype(bool)
        seen.update(int(label) for label in batch.labels[real])
        assert np.all(batch.mask[: real.sum()] == 1) and np.all(batch.mask[real.sum() :] == 0)
    assert seen == expected and sum(seen.values()) == 360
    assert shapes == {(64, 8, 8, 1)}  # 360 = 5 * 64 + 40: the last batch is padded, not smaller


def test_training_batches_are_full_shuffled_per_epoch_and_reproducible(digits):
    epoch0 = [b.labels for b in digits.train_batches(0)]
    again = [b.labels for b in digits.train_batches(0)]
    epoch1 = [b.labels for b in digits.train_batches(1)]
    assert len(epoch0) == digits.steps_per_epoch and all(len(b) == 100 for b in epoch0)
    np.testing.assert_array_equal(np.concatenate(epoch0), np.concatenate(again))
    assert not np.array_equal(np.concatenate(epoch0), np.concatenate(epoch1))
    other_seed = data.load_splits("digits", batch_size=100, seed=1)
    assert not np.array_equal(np.concatenate(epoch0), np.concatenate([b.labels for b in other_seed.train_batches(0)]))


def test_normalisation_uses_training_statistics(digits):
    images, _ = digits.arrays("train")
    assert abs(images.mean()) < 1e-4 and abs(images.std() - 1) < 1e-3
    raw, _ = data.load("digits", f"train[:{digits.meta.num_train}]")
    pixels = np.concatenate([x for x, _ in raw.batch(4096).as_numpy_iterator()]).astype(np.float64) / 255
    np.testing.assert_allclose(digits.meta.mean, [pixels.mean()], rtol=1e-6)
    np.testing.assert_allclose(digits.meta.std, [pixels.std()], rtol=1e-6)


def test_validation_is_the_tail_of_train_and_test_is_separate(digits):
    full, _ = data.load("digits", "train")
    full_images = np.stack([x for x, _ in full.as_numpy_iterator()]).astype(np.float64)
    n = digits.meta.num_train
    normalise = lambda x: (x / 255 - digits.meta.mean) / digits.meta.std  # noqa: E731
    np.testing.assert_allclose(digits.arrays("train")[0], normalise(full_images[:n]), atol=1e-5)
    np.testing.assert_allclose(digits.arrays("validation")[0], normalise(full_images[n:]), atol=1e-5)
    assert len(digits.arrays("test")[0]) == 360


def test_given_mean_and_std_are_used():
    splits = data.load_splits("digits", mean=[0.5], std=[0.25])
    images, _ = splits.arrays("test")
    raw, _ = data.load("digits", "test")
    first = next(raw.as_numpy_iterator())[0]
    np.testing.assert_allclose(images[0], (first / 255 - 0.5) / 0.25, atol=1e-6)


def test_any_tfds_dataset_goes_through_the_same_pipeline_with_mock_data():
    with tfds.testing.mock_data(num_examples=50):
        splits = data.load_splits("cifar10", batch_size=8, eval_batch_size=16, validation_fraction=0.2)
        batch = next(iter(splits.train_batches(0)))
        assert batch.images.shape == (8, 32, 32, 3) and batch.images.dtype == np.float32
        assert splits.meta.num_classes == 10 and len(splits.meta.mean) == 3
        assert sum(float(b.mask.sum()) for b in splits.eval_batches("test")) == splits.meta.num_test


def test_resizing_for_datasets_of_varied_image_sizes():
    splits = data.load_splits("digits", image_size=(16, 16))
    assert splits.meta.image_shape == (16, 16, 1)
    assert next(iter(splits.train_batches(0))).images.shape[1:] == (16, 16, 1)


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnsit'.*Did you mean 'mnist'"):
        data.load_splits("mnsit")


def test_unprepared_dataset_says_how_to_provide_it(tmp_path):
    with pytest.raises(ValueError, match=r"not prepared in .*TFDS_DATA_DIR"):
        data.load_splits("mnist", data_dir=str(tmp_path))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_validation_fraction_outside_the_open_interval_is_rejected(fraction):
    with pytest.raises(ValueError, match=r"validation_fraction"):
        data.load_splits("digits", validation_fraction=fraction)


def test_real_mnist_splits(mnist_dir):
    splits = data.load_splits("mnist", data_dir=mnist_dir, validation_fraction=0.1)
    meta = splits.meta
    assert (meta.num_train, meta.num_validation, meta.num_test) == (54_000, 6_000, 10_000)
    assert meta.mean[0] == pytest.approx(0.1307, abs=1e-3) and meta.std[0] == pytest.approx(0.3081, abs=1e-3)


def test_a_folder_of_the_users_own_images_is_a_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 10), ("test", 3)):
        for class_name, brightness in (("cats", 40), ("dogs", 200)):
            folder = tmp_path / split / class_name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(brightness, 10, (12, 10, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    splits = data.load_splits(str(tmp_path), batch_size=4, eval_batch_size=4, validation_fraction=0.2)
    meta = splits.meta
    assert (meta.num_train, meta.num_validation, meta.num_test) == (16, 4, 6)
    assert meta.image_shape == (12, 10, 3) and meta.class_names == ("cats", "dogs")
    assert sum(float(b.mask.sum()) for b in splits.eval_batches("test")) == 6
    images, labels = splits.arrays("test")
    # dark images are "cats" (label 0), bright ones "dogs" (label 1), whatever the file order.
    assert np.all((images.mean(axis=(1, 2, 3)) > 0) == (labels == 1))
