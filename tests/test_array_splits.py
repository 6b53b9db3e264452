"""In-memory splits: the same contract as the TFDS Splits (seeded order, exact resume, padded eval)."""

import numpy as np
import pytest

from jaxvision.data.arrays import ArraySplits, per_class_subset


def _splits(n=10, batch_size=3, eval_batch_size=4, seed=0):
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    labels = np.arange(n) % 3
    return ArraySplits(train=(images, labels), validation=(images[:5], labels[:5]), test=(images[:6], labels[:6]),
                       batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)


def test_an_epoch_is_a_seeded_permutation_without_the_remainder():
    splits = _splits()
    seen = np.concatenate([b.images.ravel() for b in splits.train_batches(0)])
    assert splits.steps_per_epoch == 3 and len(seen) == 9 and len(set(seen)) == 9
    again = np.concatenate([b.images.ravel() for b in splits.train_batches(0)])
    other = np.concatenate([b.images.ravel() for b in splits.train_batches(1)])
    np.testing.assert_array_equal(seen, again)
    assert not np.array_equal(seen, other)
    resumed = np.concatenate([b.images.ravel() for b in splits.train_batches(0, start=1)])
    np.testing.assert_array_equal(resumed, seen[3:])


def test_evaluation_covers_every_example_once_padded():
    batches = list(_splits().eval_batches("test"))
    assert [len(b.mask) for b in batches] == [4, 4]
    np.testing.assert_array_equal(np.concatenate([b.mask for b in batches]), [1] * 6 + [0] * 2)
    np.testing.assert_array_equal(np.concatenate([b.images.ravel() for b in batches])[:6], np.arange(6))


def test_bad_arrays_and_sizes_get_one_line():
    with pytest.raises(ValueError, match="batch_size=11"):
        _splits(batch_size=11)
    with pytest.raises(ValueError, match="one label per image"):
        ArraySplits(train=(np.zeros((3, 1, 1, 1)), np.zeros(2)), validation=(np.zeros((1, 1, 1, 1)), [0]),
                    test=(np.zeros((1, 1, 1, 1)), [0]), batch_size=1)
    with pytest.raises(ValueError, match="Unknown split"):
        next(_splits().eval_batches("val"))


def test_per_class_subset_draws_each_class_equally():
    labels = np.repeat(np.arange(4), 10)
    images, chosen = per_class_subset(np.arange(40), labels, 3, seed=0)
    np.testing.assert_array_equal(np.bincount(chosen), [3, 3, 3, 3])
    np.testing.assert_array_equal(labels[images], chosen)
    with pytest.raises(ValueError, match="only 10"):
        per_class_subset(np.arange(40), labels, 11, seed=0)
