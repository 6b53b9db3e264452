"""The tasks besides classification: losses, scores and metrics against hand computations, CenterNet's targets
and decoding, targets kept true under augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import augment
from jaxvision.augment.targets import TargetAugment
from jaxvision.batch import Batch
from jaxvision.tasks import BinaryTask, DetectionTask, RegressionTask, SegmentationTask, make_task, task_from_record
from jaxvision.tasks.detection import gaussian_radius


def test_binary_loss_score_and_auc_by_hand():
    task = BinaryTask(class_names=("no", "yes"))
    logits = jnp.asarray([[0.0], [2.0], [-1.0], [1.0]])
    labels = jnp.asarray([1.0, 1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-np.asarray([0.0, 2.0, -1.0, 1.0])))
    expected = -(np.asarray([1, 1, 0, 0]) * np.log(p) + np.asarray([0, 0, 1, 1]) * np.log(1 - p))
    np.testing.assert_allclose(task.loss(logits, labels), expected, rtol=1e-6)
    np.testing.assert_array_equal(task.score(logits, labels), [1.0, 1.0, 1.0, 0.0])  # p(0) = 0.5 >= 0.5 counts as yes
    # ROC AUC by hand: positives score 0.35 and 0.8, negatives 0.1 and 0.4; of the 4 pairs 3 are ordered: 0.75.
    parts = [{"probability": np.asarray([0.1, 0.4]), "target": np.asarray([0.0, 0.0])},
             {"probability": np.asarray([0.35, 0.8]), "target": np.asarray([1.0, 1.0])}]
    figures = task.metrics(parts)
    assert figures["auc"] == pytest.approx(0.75)
    assert figures["accuracy"] == pytest.approx(0.75)  # 0.35 is called negative
    assert figures["recall"] == pytest.approx(0.5) and figures["precision"] == pytest.approx(1.0)


def test_binary_targets_refuse_more_classes():
    with pytest.raises(ValueError, match="expected one 0/1 label per image"):
        BinaryTask().check_targets(np.asarray([0, 1, 2]), "the train split")


def test_regression_normalises_with_training_statistics_and_reports_units():
    train = np.asarray([[1.0], [3.0], [5.0]])
    task = RegressionTask.fitted(train, ("area",))
    assert task.mean == (3.0,) and task.std[0] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    normalised = task.check_targets(np.asarray([3.0, 5.0]), "test")
    np.testing.assert_allclose(normalised[:, 0], [0.0, 2.0 / np.std([1.0, 3.0, 5.0])], rtol=1e-6)
    target = np.asarray([[1.0], [2.0], [4.0]])
    predicted = np.asarray([[1.5], [2.0], [3.0]])
    parts = [task.summarize(task.check_targets(predicted, "p"), task.check_targets(target, "t"))]
    figures = task.metrics(parts)
    residual = np.sum((target - predicted) ** 2)
    total = np.sum((target - target.mean()) ** 2)
    assert figures["r2"] == pytest.approx(1 - residual / total, rel=1e-5)
    assert figures["mae"] == pytest.approx(np.mean(np.abs(target - predicted)), rel=1e-5)
    assert figures["rmse"] == pytest.approx(np.sqrt(np.mean((target - predicted) ** 2)), rel=1e-5)


def test_regression_losses_by_hand():
    outputs, targets = jnp.asarray([[0.5], [3.0]]), jnp.asarray([[0.0], [0.0]])
    np.testing.assert_allclose(RegressionTask(loss_name="mse").loss(outputs, targets), [0.25, 9.0])
    np.testing.assert_allclose(RegressionTask(loss_name="mae").loss(outputs, targets), [0.5, 3.0])
    np.testing.assert_allclose(RegressionTask(loss_name="huber").loss(outputs, targets), [0.125, 2.5])
    with pytest.raises(ValueError, match="Invalid regression loss 'l3'"):
        RegressionTask(loss_name="l3")


def test_segmentation_ignores_255_and_counts_iou():
    task = SegmentationTask(class_names=("background", "thing"))
    masks = jnp.asarray([[[0, 1], [1, 255]]])
    outputs = jnp.asarray([[[[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [1.0, 1.0]]]])
    changed = outputs.at[0, 1, 1].set(jnp.asarray([-9.0, 9.0]))  # only the ignored pixel differs
    np.testing.assert_allclose(task.loss(outputs, masks), task.loss(changed, masks), rtol=1e-6)
    np.testing.assert_allclose(task.score(outputs, masks), [2 / 3])  # 3 labelled pixels, (1, 0) is wrong
    figures = task.metrics([task.summarize(np.asarray(outputs), np.asarray(masks))])
    # truth bg: 1 pixel, predicted bg there; truth thing: 2 pixels, one predicted bg.
    # IoU(bg) = 1 / (1 + 1) = 0.5; IoU(thing) = 1 / 2 = 0.5.
    assert figures["per_class_iou"] == {"background": pytest.approx(0.5), "thing": pytest.approx(0.5)}
    assert figures["pixel_accuracy"] == pytest.approx(2 / 3) and figures["pixels"] == 3
    with pytest.raises(ValueError, match="Invalid mask value 7"):
        task.check_targets(np.asarray([[[0, 7]]]), "the train split")


def test_gaussian_radius_matches_centernet_reference():
    def reference(height, width, min_overlap=0.7):  # xingyizhou/CenterNet src/lib/utils/image.py, transcribed
        a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
        r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
        a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
        r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
        a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
        r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
        return max(0, int(min(r1, r2, r3)))

    for height, width in ((3.0, 4.0), (10.0, 2.5), (1.0, 1.0), (7.3, 7.3)):
        assert float(gaussian_radius(jnp.asarray(height), jnp.asarray(width))) == reference(height, width)


def _targets(boxes, classes, most=3):
    b = np.zeros((1, most, 4), np.float32)
    c = np.zeros((1, most), np.int32)
    v = np.zeros((1, most), bool)
    b[0, :len(boxes)], c[0, :len(boxes)], v[0, :len(boxes)] = boxes, classes, True
    return {"boxes": jnp.asarray(b), "classes": jnp.asarray(c), "valid": jnp.asarray(v)}


def _perfect_outputs(task, boxes, classes):
    """What a perfect CenterNet outputs for these boxes: a +8 logit at each centre, the size and offset there."""
    h, w = task.grid
    out = np.full((1, h, w, task.num_classes + 4), -8.0, np.float32)
    for (x1, y1, x2, y2), cls in zip(boxes, classes):
        cx, cy = (x1 + x2) / 2 / task.stride, (y1 + y2) / 2 / task.stride
        ix, iy = int(cx), int(cy)
        out[0, iy, ix, cls] = 8.0
        out[0, iy, ix, task.num_classes:] = [np.log((x2 - x1) / task.stride), np.log((y2 - y1) / task.stride), cx - ix, cy - iy]
    return jnp.asarray(out)


def test_centernet_heatmap_peaks_at_centres():
    task = DetectionTask(class_names=("a", "b"), image_size=(32, 32), stride=4)
    heat = np.asarray(task.heatmap(_targets([[4.0, 4.0, 12.0, 12.0], [16.0, 20.0, 30.0, 28.0]], [0, 1])))
    assert heat.shape == (1, 8, 8, 2)
    # box 0: centre (8, 8) px -> cell (2, 2); box 1: centre (23, 24) px -> cell x 5, y 6.
    assert heat[0, 2, 2, 0] == 1.0 and heat[0, 6, 5, 1] == 1.0
    assert np.sum(heat == 1.0) == 2 and heat[0, 2, 2, 1] < 1e-3
    # Box 0 is 2x2 cells: CenterNet's radius for it, sigma = (2r + 1) / 6, the neighbour one cell right.
    sigma = (2 * float(gaussian_radius(jnp.asarray(2.0), jnp.asarray(2.0))) + 1) / 6
    assert heat[0, 2, 3, 0] == pytest.approx(np.exp(-1 / (2 * sigma ** 2)), rel=1e-5)
    assert heat[0, 3, 3, 0] == pytest.approx(np.exp(-2 / (2 * sigma ** 2)), rel=1e-5)


def test_centernet_decodes_perfect_outputs_to_the_boxes_and_full_map():
    task = DetectionTask(class_names=("a", "b"), image_size=(32, 32), stride=4)
    boxes = [[4.0, 4.0, 12.0, 12.0], [16.0, 20.0, 30.0, 28.0]]
    outputs = _perfect_outputs(task, boxes, [0, 1])
    found = task.decode(np.asarray(outputs))[0]
    order = np.argsort(found["classes"])
    confident = found["scores"][order] > 0.9
    np.testing.assert_allclose(found["boxes"][order][confident], boxes, atol=1e-4)
    np.testing.assert_array_equal(found["classes"][order][confident], [0, 1])
    targets = _targets(boxes, [0, 1])
    parts = [task.summarize(np.asarray(outputs), jax.tree.map(np.asarray, targets))]
    assert task.metrics(parts)["map50"] == pytest.approx(1.0) and task.metrics(parts)["map"] == pytest.approx(1.0)
    np.testing.assert_allclose(task.score(outputs, targets), [1.0])
    # The perfect outputs' box terms are zero; moving the size off raises the loss.
    worse = outputs.at[0, 2, 2, 2].add(0.5)
    assert float(task.loss(worse, targets)[0]) > float(task.loss(outputs, targets)[0]) + 0.05


def test_detection_targets_checked():
    task = DetectionTask(class_names=("a",), image_size=(32, 32))
    with pytest.raises(ValueError, match="Invalid box class 3"):
        task.check_targets({k: np.asarray(v) for k, v in _targets([[1, 1, 5, 5]], [3]).items()}, "train")
    with pytest.raises(ValueError, match="expected x1 < x2"):
        task.check_targets({k: np.asarray(v) for k, v in _targets([[5, 1, 1, 5]], [0]).items()}, "train")
    with pytest.raises(ValueError, match="multiples of 4"):
        DetectionTask(image_size=(30, 32))


def test_target_augment_flips_mask_and_boxes_with_the_pixels():
    image = np.zeros((1, 8, 10, 1), np.float32)
    image[0, 2:5, 1:4] = 1.0  # an object over rows 2-4, columns 1-3: box x 1..4, y 2..5 (edges)
    mask = (image[..., 0] > 0).astype(np.int32)
    pipeline = augment.parse_augment_spec("flip:1")
    key = jax.random.key(0)
    flipped = TargetAugment(pipeline, "mask")(key, Batch.of(image, mask))
    np.testing.assert_array_equal(flipped.images, pipeline(key, Batch.of(image, mask)).images)  # same pixels as plain
    np.testing.assert_array_equal(flipped.images[..., 0], image[:, :, ::-1, 0])
    np.testing.assert_array_equal(flipped.labels, mask[:, :, ::-1])
    boxes = {"boxes": jnp.asarray([[[1.0, 2.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0]]]), "classes": jnp.asarray([[2, 0]]),
             "valid": jnp.asarray([[True, False]])}
    moved = TargetAugment(pipeline, "boxes")(key, Batch(images=jnp.asarray(image), labels=boxes, mask=jnp.ones(1)))
    np.testing.assert_allclose(moved.labels["boxes"][0, 0], [10 - 4.0, 2.0, 10 - 1.0, 5.0], atol=1e-5)
    assert bool(moved.labels["valid"][0, 0]) and not bool(moved.labels["valid"][0, 1])
    assert int(moved.labels["classes"][0, 0]) == 2


def test_target_augment_crop_moves_mask_as_image_and_refuses_mixing():
    rng = np.random.default_rng(0)
    image = rng.random((4, 12, 12, 1)).astype(np.float32) * 0.9 + 0.05  # no pixel is 0, the crop's fill
    mask = (image[..., 0] > 0.5).astype(np.int32)
    pipeline = augment.parse_augment_spec("crop:3,flip")
    out = TargetAugment(pipeline, "mask")(jax.random.key(3), Batch.of(image, mask))
    plain = pipeline(jax.random.key(3), Batch.of(image, mask))
    np.testing.assert_array_equal(out.images, plain.images)
    # Crops and flips move whole pixels: the warped mask is the mask of the warped image, filled pixels background.
    np.testing.assert_array_equal(out.labels, (np.asarray(out.images[..., 0]) > 0.5).astype(np.int32))
    assert np.any(np.asarray(out.images) == 0.0)  # some crop did move the picture
    with pytest.raises(ValueError, match="mixup blends two images"):
        TargetAugment(augment.parse_augment_spec("flip,mixup", num_classes=3), "boxes")


def test_tasks_round_trip_through_their_record():
    tasks = [BinaryTask(("x", "y"), 0.4), RegressionTask(("a", "b"), (1.0, 2.0), (0.5, 3.0), "huber"),
             SegmentationTask(("bg", "fg"), 0.5), DetectionTask(("c",), (16, 24), 4, 7, 0.6, 0.05)]
    for task in tasks:
        assert task_from_record(task.record()) == task
    assert make_task("segment", ("background", "x")).num_classes == 2
