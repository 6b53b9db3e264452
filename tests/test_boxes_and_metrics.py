"""Box ops, NMS, COCO-style mAP, segmentation metrics and target warps, against hand-computed values."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes as box_ops
from jaxvision import detection_metrics as dm
from jaxvision import segmentation_metrics as sm
from jaxvision.augment import affine
from jaxvision.augment.targets import warp_boxes, warp_mask

# ---------------------------------------------------------------------------------------------- boxes


def test_iou_and_giou_match_hand_values():
    a = jnp.array([[0.0, 0, 2, 2], [0, 0, 1, 1]])
    b = jnp.array([[1.0, 1, 3, 3], [2, 0, 3, 1]])
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 7, enclosing [0,0,3,3] of area 9.
    # [0,0,1,1] vs [2,0,3,1]: disjoint, union 2, enclosing [0,0,3,1] of area 3.
    # [0,0,2,2] vs [2,0,3,1]: touching edges, intersection 0, union 5, enclosing [0,0,3,2] area 6.
    # [0,0,1,1] vs [1,1,3,3]: touching corners, union 5, enclosing area 9.
    expected_iou = np.array([[1 / 7, 0.0], [0.0, 0.0]])
    expected_giou = np.array([[1 / 7 - 2 / 9, 0 - 1 / 6], [0 - 4 / 9, 0 - 1 / 3]])
    np.testing.assert_allclose(box_ops.iou(a, b), expected_iou, atol=1e-6)
    np.testing.assert_allclose(box_ops.giou(a, b), expected_giou, atol=1e-6)
    np.testing.assert_allclose(dm.pairwise_iou(np.asarray(a), np.asarray(b)), expected_iou, atol=1e-12)
    np.testing.assert_allclose(box_ops.area(a), [4.0, 1.0])


def test_iou_of_empty_boxes_is_zero_not_nan():
    empty = jnp.array([[1.0, 1, 1, 1]])
    np.testing.assert_array_equal(box_ops.iou(empty, empty), [[0.0]])
    np.testing.assert_array_equal(dm.pairwise_iou(np.asarray(empty), np.asarray(empty)), [[0.0]])


def test_giou_loss_and_l1_of_matched_pairs():
    predictions = jnp.array([[0.0, 0, 1, 1], [0, 0, 2, 2]])
    targets = jnp.array([[2.0, 0, 3, 1], [0, 0, 2, 2]])
    np.testing.assert_allclose(box_ops.giou_loss(predictions, targets), [1 + 1 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(box_ops.l1(predictions, targets), [4.0, 0.0])
    # GIoU's point: disjoint boxes still get a gradient pulling them together (IoU's would be 0).
    gradient = jax.grad(lambda p: box_ops.giou_loss(p, targets[:1]).sum())(predictions[:1])
    assert float(gradient[0, 2]) < 0  # moving the right edge right reduces the loss


def test_box_format_conversions_match_hand_values_and_round_trip():
    boxes = jnp.array([[10.0, 20, 30, 60]])  # x1, y1, x2, y2 in a 100 (high) x 200 (wide) image
    yxyx = box_ops.to_normalized_yxyx(boxes, 100, 200)
    np.testing.assert_allclose(yxyx, [[0.2, 0.05, 0.6, 0.15]], rtol=1e-6)
    np.testing.assert_allclose(box_ops.to_cxcywh(boxes), [[20.0, 40, 20, 40]])
    np.testing.assert_allclose(box_ops.to_yolo(boxes, 100, 200), [[0.1, 0.4, 0.1, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(box_ops.from_normalized_yxyx(yxyx, 100, 200), boxes, rtol=1e-6)
    np.testing.assert_allclose(box_ops.from_cxcywh(box_ops.to_cxcywh(boxes)), boxes)
    np.testing.assert_allclose(box_ops.from_yolo(box_ops.to_yolo(boxes, 100, 200), 100, 200), boxes, rtol=1e-6)


def test_box_ops_jit_and_vmap():
    a = jax.random.uniform(jax.random.key(0), (3, 5, 2)) * 10
    a = jnp.concatenate([a, a + 1 + jax.random.uniform(jax.random.key(1), (3, 5, 2)) * 5], -1)
    batched = jax.jit(jax.vmap(box_ops.giou))(a, a[::-1])
    for i in range(3):
        np.testing.assert_allclose(batched[i], box_ops.giou(a[i], a[2 - i]), atol=1e-6)
    np.testing.assert_allclose(jnp.diagonal(box_ops.iou(a[0], a[0])), 1.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- NMS


def test_nms_keeps_by_score_and_drops_overlaps_strictly_above_threshold():
    boxes = np.array([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 90 / 110 = 0.82 > 0.5: box 1 goes. IoU(0, 2) = 50 / 100 = 0.5, not > 0.5: box 2 stays.
    np.testing.assert_array_equal(dm.nms(boxes, scores, 0.5), [3, 0, 2])
    np.testing.assert_array_equal(dm.nms(boxes, scores, 0.9), [3, 0, 1, 2])
    np.testing.assert_array_equal(dm.nms(boxes, scores, 0.5, max_outputs=2), [3, 0])
    # A suppressed box suppresses nothing: 2 overlaps 1 (IoU 45 / 105) but 1 was already dropped by 0.
    np.testing.assert_array_equal(dm.nms(boxes, scores, 0.4), [3, 0])
    assert dm.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_rejects_bad_arguments_in_one_line():
    with pytest.raises(ValueError, match=r"Invalid iou_threshold 1.5: expected a float in \[0, 1\]"):
        dm.nms(np.zeros((1, 4)), np.zeros(1), 1.5)
    with pytest.raises(ValueError, match="Invalid scores of length 2"):
        dm.nms(np.zeros((1, 4)), np.zeros(2), 0.5)


# ---------------------------------------------------------------------------------------------- AP / mAP


def test_average_precision_makes_precision_monotone_and_reads_101_recalls():
    # Sorted by score: TP FP FP TP TP with 3 ground truths.
    #   recall    1/3  1/3  1/3  2/3  1
    #   precision 1    1/2  1/3  1/2  3/5   -> monotone from the right: 1, 3/5, 3/5, 3/5, 3/5
    # Recalls 0.00..0.33 (34 points) read precision 1; 0.34..0.66 (33) read 3/5; 0.67..1.00 (34) read 3/5.
    # Without the monotone step the middle 33 would read 1/2.
    scores = np.array([0.6, 0.9, 0.5, 0.7, 0.8])  # given out of order: the function sorts
    hits = np.array([True, True, True, False, False])
    expected = (34 * 1 + 67 * 0.6) / 101
    assert dm.average_precision(scores, hits, 3) == pytest.approx(expected, abs=1e-12)
    assert dm.average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    with pytest.raises(ValueError, match="Invalid is_true_positive of length 4: expected one flag per score"):
        dm.average_precision(scores, hits[:4], 3)


def _hand_example():
    """Three images, classes 0 and 1 with ground truth, class 2 detected but never present."""
    ground_truths = [
        {"boxes": np.array([[0.0, 0, 10, 10], [30, 0, 40, 10]]), "labels": np.array([0, 1])},  # A (0), E (1)
        {"boxes": np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": np.array([0, 0])},  # B, C
        {"boxes": np.array([[5.0, 5, 15, 15]]), "labels": np.array([1])},  # D
    ]
    detections = [
        {  # image 0
            "boxes": np.array([[0.0, 0, 10, 10], [1, 0, 11, 10], [30, 0, 40, 10], [0, 0, 10, 10]]),
            "scores": np.array([0.9, 0.8, 0.95, 0.85]),
            "labels": np.array([0, 0, 1, 1]),
        },
        {  # image 1
            "boxes": np.array([[20.0, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 5], [0, 0, 5, 5]]),
            "scores": np.array([0.7, 0.6, 0.4, 0.99]),
            "labels": np.array([0, 0, 0, 2]),
        },
        {  # image 2
            "boxes": np.array([[0.0, 0, 10, 10], [5, 5, 15, 15]]),
            "scores": np.array([0.5, 0.3]),
            "labels": np.array([0, 1]),
        },
    ]
    return detections, ground_truths


# Class 0, 3 ground truths (A, B, C), its detections by score:
#   0.9 img0 on A, IoU 1                      TP
#   0.8 img0 on A shifted 1px, IoU 90/110     FP (A already taken: a duplicate)
#   0.7 img1 on C, IoU 1                      TP
#   0.6 img1 nowhere                          FP
#   0.5 img2, which has no class-0 truth       FP
#   0.4 img1 top half of B, IoU 50/100 = 0.5  TP at IoU 0.5 (>= threshold), FP at 0.75
# At 0.5: recall 1/3 1/3 2/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 2/5 1/2 -> monotone 1 2/3 2/3 1/2 1/2 1/2;
#   34 recall points read 1, 33 read 2/3, 34 read 1/2: AP = (34 + 22 + 17) / 101 = 73/101.
# At 0.75: the last one is FP, recall never passes 2/3: AP = (34 + 22) / 101 = 56/101.
# Class 1, 2 ground truths (E, D): 0.95 img0 on E TP; 0.85 img0 on A (a class-0 box) FP; 0.3 img2 on D TP:
#   recall 1/2 1/2 1, precision 1 1/2 2/3 -> 51 points read 1, 50 read 2/3: AP = (51 + 100/3) / 101 = 253/303
#   at both thresholds.
# Class 2 has no ground truth: left out, though its one detection scores highest.
AP0_50, AP0_75, AP1 = 73 / 101, 56 / 101, 253 / 303


def test_map_at_50_matches_the_hand_computed_example():
    detections, ground_truths = _hand_example()
    result = dm.mean_average_precision(detections, ground_truths, (0.5,))
    assert set(result["per_class"]) == {0, 1}
    assert result["per_class"][0] == pytest.approx(AP0_50, abs=1e-12)
    assert result["per_class"][1] == pytest.approx(AP1, abs=1e-12)
    assert result["map"] == pytest.approx((AP0_50 + AP1) / 2, abs=1e-12)


def test_map_over_thresholds_averages_classes_and_thresholds():
    detections, ground_truths = _hand_example()
    result = dm.mean_average_precision(detections, ground_truths, (0.5, 0.75))
    assert result["per_threshold"][0.75] == pytest.approx((AP0_75 + AP1) / 2, abs=1e-12)
    assert result["map"] == pytest.approx((AP0_50 + AP0_75 + 2 * AP1) / 4, abs=1e-12)
    coco = dm.mean_average_precision(detections, ground_truths, dm.COCO_IOU_THRESHOLDS)
    assert len(coco["per_threshold"]) == 10 and coco["map"] < result["map"]


def test_matching_takes_the_highest_iou_unmatched_truth():
    # d1 overlaps G1 (IoU 70/130) and G2 (IoU 90/110): it must take G2, leaving G1 for d2 (IoU 1).
    # Matching d1 to the first truth above 0.5 would leave d2 a false positive and AP 51/101.
    ground_truths = [{"boxes": np.array([[0.0, 0, 10, 10], [4, 0, 14, 10]]), "labels": np.array([0, 0])}]
    detections = [{"boxes": np.array([[3.0, 0, 13, 10], [0, 0, 10, 10]]), "scores": np.array([0.9, 0.8]), "labels": np.array([0, 0])}]
    assert dm.mean_average_precision(detections, ground_truths)["map"] == pytest.approx(1.0)


def test_map_edge_cases_no_detections_and_perfect():
    _, ground_truths = _hand_example()
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in ground_truths]
    assert dm.mean_average_precision(empty, ground_truths)["map"] == 0.0
    perfect = [dict(g, scores=np.linspace(1, 0.5, len(g["labels"]))) for g in ground_truths]
    result = dm.mean_average_precision(perfect, ground_truths, dm.COCO_IOU_THRESHOLDS)
    assert result["map"] == pytest.approx(1.0)
    # max_detections: keeping only the top detection per image and class loses B (a second class-0 box).
    capped = dm.mean_average_precision(perfect, ground_truths, max_detections=1)
    assert capped["per_class"][0] == pytest.approx(67 / 101)  # recall 2/3 at precision 1: 67 points


def test_map_rejects_mismatched_inputs_in_one_line():
    detections, ground_truths = _hand_example()
    with pytest.raises(ValueError, match="Invalid detections for 2 images: expected one entry per ground-truth image"):
        dm.mean_average_precision(detections[:2], ground_truths)
    with pytest.raises(ValueError, match=r"missing \['scores'\]"):
        dm.mean_average_precision([{"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}], ground_truths[:1])


# ---------------------------------------------------------------------------------------------- segmentation

LABELS = np.array([[0, 0, 1], [1, 2, 2]])
PREDICTIONS = np.array([[0, 1, 1], [1, 2, 0]])


def test_segmentation_metrics_match_hand_values():
    # Confusion (row truth, column prediction): (0,0)=1 (0,1)=1 (1,1)=2 (2,2)=1 (2,0)=1; class 3 absent.
    # TP 1,2,1  FP 1,1,0  FN 1,0,1 -> IoU 1/3, 2/3, 1/2; Dice 2/4, 4/5, 2/3; pixel accuracy 4/6.
    matrix = sm.confusion_matrix(jnp.asarray(LABELS), jnp.asarray(PREDICTIONS), 4)
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert float(sm.pixel_accuracy(matrix)) == pytest.approx(4 / 6)
    iou = np.asarray(sm.per_class_iou(matrix))
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2], rtol=1e-6)
    assert np.isnan(iou[3])
    assert float(sm.mean_iou(matrix)) == pytest.approx(0.5)
    np.testing.assert_allclose(sm.per_class_dice(matrix)[:3], [0.5, 0.8, 2 / 3], rtol=1e-6)
    assert float(sm.mean_dice(matrix)) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_segmentation_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 16, 16))
    predictions = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, 4, labels.shape))
    matrix = jax.jit(sm.confusion_matrix, static_argnums=2)(jnp.asarray(labels), jnp.asarray(predictions), 5)
    np.testing.assert_array_equal(matrix[:4, :4], metrics.confusion_matrix(labels.ravel(), predictions.ravel()))
    present = [0, 1, 2, 3]  # class 4 appears nowhere; scikit-learn would score it 0, we leave it out
    jaccard = metrics.jaccard_score(labels.ravel(), predictions.ravel(), labels=present, average=None)
    np.testing.assert_allclose(sm.per_class_iou(matrix)[:4], jaccard, rtol=1e-6)
    assert float(sm.mean_iou(matrix)) == pytest.approx(jaccard.mean(), rel=1e-6)
    f1 = metrics.f1_score(labels.ravel(), predictions.ravel(), labels=present, average=None)
    np.testing.assert_allclose(sm.per_class_dice(matrix)[:4], f1, rtol=1e-6)
    assert float(sm.pixel_accuracy(matrix)) == pytest.approx(metrics.accuracy_score(labels.ravel(), predictions.ravel()))


def test_confusion_matrix_skips_ignore_index_and_out_of_range_pixels():
    labels = jnp.array([0, 2, 1, 2, 255, 0])
    predictions = jnp.array([0, 1, 1, 0, 1, 4])
    # Class 2 ignored; label 255 and prediction 4 are outside [0, 3) and never counted (a flat
    # bincount would file (0, 4) under cell 0 * 3 + 4, i.e. (1, 1)).
    np.testing.assert_array_equal(sm.confusion_matrix(labels, predictions, 3, ignore_index=2), [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(sm.confusion_matrix(labels, predictions, 3), [[1, 0, 0], [0, 1, 0], [1, 1, 0]])


def test_soft_dice_loss_hand_values():
    labels = jnp.array([[[0, 1]]])  # one 1x2 image
    # Uniform logits: p = 1/2 everywhere. Per class: intersection 1/2, sizes 1 + 1 = 2.
    # smooth 1: (1 + 1) / (2 + 1) = 2/3 -> loss 1/3. smooth ~0: 1 / 2 -> loss 1/2.
    uniform = jnp.zeros((1, 1, 2, 2))
    np.testing.assert_allclose(sm.soft_dice_loss(uniform, labels), [1 / 3], rtol=1e-6)
    np.testing.assert_allclose(sm.soft_dice_loss(uniform, labels, smooth=1e-9), [0.5], rtol=1e-6)
    confident = 50.0 * jax.nn.one_hot(labels, 2)
    np.testing.assert_allclose(sm.soft_dice_loss(confident, labels), [0.0], atol=1e-6)
    wrong = 50.0 * jax.nn.one_hot(1 - labels, 2)
    # All mass on the wrong class: intersection 0, sizes 2 -> (0 + 1) / (2 + 1) per class: loss 2/3.
    np.testing.assert_allclose(sm.soft_dice_loss(wrong, labels), [2 / 3], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- targets

HEIGHT, WIDTH = 4, 6
BOX = jnp.array([[1.0, 0, 3, 2]])  # covers columns 1-2, rows 0-1
VALID = jnp.array([True])


def _mask(height=HEIGHT, width=WIDTH):
    """Background class 1 everywhere, the object (class 2) on the pixels of BOX."""
    mask = np.ones((height, width), np.int32)
    mask[0:2, 1:3] = 2
    return jnp.asarray(mask)


def _box_of(mask, cls=2):
    rows, columns = np.nonzero(np.asarray(mask) == cls)
    return [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]


def test_horizontal_flip_of_box_and_mask():
    matrix = affine.scaling(-1.0, 1.0, HEIGHT, WIDTH)
    boxes, valid = warp_boxes(BOX, VALID, matrix, HEIGHT, WIDTH)
    np.testing.assert_allclose(boxes, [[3.0, 0, 5, 2]], atol=1e-5)  # [W - x2, y1, W - x1, y2]
    assert bool(valid[0])
    mask = warp_mask(_mask(), matrix)
    np.testing.assert_array_equal(mask, np.asarray(_mask())[:, ::-1])
    assert _box_of(mask) == [3, 0, 5, 2]


def test_rotation_by_90_degrees_of_box_and_mask():
    size = 6
    matrix = affine.rotation(90.0, size, size)
    # Counter-clockwise as displayed: pixel (row, column) -> (5 - column, row); the top band goes left.
    boxes, valid = warp_boxes(BOX, VALID, matrix, size, size)
    np.testing.assert_allclose(boxes, [[0.0, 3, 2, 5]], atol=1e-5)
    mask = warp_mask(_mask(size, size), matrix)
    np.testing.assert_array_equal(mask, np.rot90(np.asarray(_mask(size, size))))
    assert _box_of(mask) == [0, 3, 2, 5] and bool(valid[0])


def test_rotation_by_45_degrees_reboxes_the_corners():
    # A 2x2 box centred in a 6x6 image: its corners go to sqrt(2) from the centre (3, 3) along the axes.
    boxes, _ = warp_boxes(jnp.array([[2.0, 2, 4, 4]]), VALID, affine.rotation(45.0, 6, 6), 6, 6)
    np.testing.assert_allclose(boxes, [[3 - 2**0.5, 3 - 2**0.5, 3 + 2**0.5, 3 + 2**0.5]], atol=1e-5)


def test_translation_moves_box_and_mask_and_fills_background():
    matrix = affine.translation(2.0, 1.0)
    boxes, _ = warp_boxes(BOX, VALID, matrix, HEIGHT, WIDTH)
    np.testing.assert_allclose(boxes, [[3.0, 1, 5, 3]], atol=1e-5)
    mask = np.asarray(warp_mask(_mask(), matrix))
    assert _box_of(mask) == [3, 1, 5, 3]
    np.testing.assert_array_equal(mask[0], 0)  # shifted in from outside: background 0, not class 1
    np.testing.assert_array_equal(mask[:, :2], 0)
    assert mask.dtype == np.int32


def test_boxes_leaving_the_image_are_dropped_and_partial_ones_clipped():
    boxes = jnp.array([[1.0, 0, 3, 2], [0, 0, 1, 1], [4, 2, 6, 4]])
    valid = jnp.array([True, True, False])  # the last row is padding
    moved, kept = warp_boxes(boxes, valid, affine.translation(4.0, 0.0), HEIGHT, WIDTH)
    # Box 0 -> [5, 0, 7, 2] clipped to [5, 0, 6, 2] (area 2); box 1 -> [4, 0, 5, 1]; padding stays out.
    np.testing.assert_allclose(moved, [[5.0, 0, 6, 2], [4, 0, 5, 1], [0, 0, 0, 0]], atol=1e-5)
    np.testing.assert_array_equal(kept, [True, True, False])
    gone, kept = warp_boxes(boxes, valid, affine.translation(10.0, 0.0), HEIGHT, WIDTH)
    np.testing.assert_array_equal(kept, [False, False, False])
    np.testing.assert_array_equal(gone, 0.0)
    _, kept = warp_boxes(boxes, valid, affine.translation(4.0, 0.0), HEIGHT, WIDTH, min_area=1.5)
    np.testing.assert_array_equal(kept, [True, False, False])
    # Out over the top-left corner: [1, 0, 3, 2] -> [-1, -1, 1, 1], clipped to [0, 0, 1, 1].
    moved, kept = warp_boxes(BOX, VALID, affine.translation(-2.0, -1.0), HEIGHT, WIDTH)
    np.testing.assert_allclose(moved, [[0.0, 0, 1, 1]], atol=1e-5)
    assert bool(kept[0])


def test_target_warps_reject_bad_shapes_in_one_line():
    with pytest.raises(ValueError, match=r"Invalid boxes of shape \(4,\): expected \[N, 4\]"):
        warp_boxes(jnp.zeros(4), VALID, affine.identity(), HEIGHT, WIDTH)
    with pytest.raises(ValueError, match=r"Invalid valid of shape \(2,\): expected \[1\]"):
        warp_boxes(BOX, jnp.array([True, False]), affine.identity(), HEIGHT, WIDTH)
    with pytest.raises(ValueError, match=r"Invalid mask dtype float32 of shape \(4, 6\): expected integer class indices"):
        warp_mask(jnp.zeros((HEIGHT, WIDTH)), affine.identity())


def test_target_warps_jit_and_vmap_with_one_trace():
    matrices = jnp.stack([affine.scaling(-1.0, 1.0, HEIGHT, WIDTH), affine.translation(2.0, 1.0), affine.identity()])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def warp(matrices):
        boxes = jnp.broadcast_to(BOX, (3, 1, 4))
        warped = jax.vmap(lambda b, m: warp_boxes(b, VALID, m, HEIGHT, WIDTH))(boxes, matrices)
        return warped, jax.vmap(warp_mask, in_axes=(None, 0))(_mask(), matrices)

    (boxes, valid), masks = warp(matrices)
    warp(matrices * 1.0)
    np.testing.assert_allclose(boxes[:, 0], [[3.0, 0, 5, 2], [3, 1, 5, 3], [1, 0, 3, 2]], atol=1e-5)
    assert bool(valid.all())
    for mask, box in zip(masks, boxes[:, 0]):
        np.testing.assert_allclose(_box_of(mask), box, atol=1e-5)
