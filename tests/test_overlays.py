"""Segmentation masks and detection boxes drawn over images."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from jaxvision.visualize import overlays  # noqa: E402

NAMES = ["background", "cat", "dog"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_palette_is_the_voc_colour_map():
    # Golden rows from the PASCAL VOC devkit's colour map (VOClabelcolormap.m).
    assert overlays.PALETTE.dtype == np.uint8 and overlays.PALETTE.shape == (256, 3)
    np.testing.assert_array_equal(overlays.PALETTE[[0, 1, 2, 3, 15, 255]],
                                  [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [192, 128, 128], [224, 224, 192]])
    assert len(np.unique(overlays.PALETTE, axis=0)) == 256
    np.testing.assert_array_equal(overlays.class_colors(3), overlays.PALETTE[:3])
    with pytest.raises(ValueError, match="num_classes=0"):
        overlays.class_colors(0)


def test_blend_mask_matches_a_hand_computation():
    image = np.array([[[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]], [[0.0, 0.5, 1.0], [0.3, 0.3, 0.3]]], np.float32)
    mask = np.array([[0, 1], [2, 255]])
    blended = overlays.blend_mask(image, mask, alpha=0.25)
    assert blended.dtype == np.float32 and blended.shape == (2, 2, 3)
    expected = image.copy()
    expected[0, 1] = [0.75 * 1.0 + 0.25 * 128 / 255, 0.75 * 1.0, 0.75 * 1.0]  # class 1 = (128, 0, 0)
    expected[1, 0] = [0.0, 0.75 * 0.5 + 0.25 * 128 / 255, 0.75 * 1.0]      # class 2 = (0, 128, 0)
    np.testing.assert_allclose(blended, expected, atol=1e-6)  # background and ignore pixels unchanged


def test_blend_mask_expands_grey_and_accepts_uint8():
    grey = np.array([[[0.4]], [[0.8]]], np.float32)  # [2, 1, 1]
    blended = overlays.blend_mask(grey, np.array([[1], [0]]), alpha=0.5)
    np.testing.assert_allclose(blended, [[[0.2 + 0.5 * 128 / 255, 0.2, 0.2]], [[0.8, 0.8, 0.8]]], atol=1e-6)
    uint8 = overlays.blend_mask(np.full((1, 1, 3), 255, np.uint8), np.array([[3]]), alpha=1.0)
    np.testing.assert_allclose(uint8, [[[128 / 255, 128 / 255, 0.0]]], atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"mask": np.zeros((2, 3), int)}, r"mask of shape \(2, 3\): expected \(2, 2\)"),
    ({"mask": np.zeros((2, 2), np.float32)}, "dtype float32"),
    ({"mask": np.full((2, 2), 300)}, "value 300"),
    ({"mask": np.zeros((2, 2), int), "alpha": 1.5}, "alpha=1.5"),
    ({"image": np.zeros((2, 2, 4), np.float32)}, "4 channels"),
    ({"image": np.full((2, 2, 3), 2.0, np.float32)}, r"expected \[0, 1\]"),
])
def test_blend_mask_rejects_bad_inputs(kwargs, match):
    arguments = {"image": np.zeros((2, 2, 3), np.float32), "mask": np.zeros((2, 2), int), **kwargs}
    with pytest.raises(ValueError, match=match) as error:
        overlays.blend_mask(arguments.pop("image"), arguments.pop("mask"), **arguments)
    assert "\n" not in str(error.value)


def _scene(count=2, size=8):
    images = np.full((count, size, size, 3), 0.5, np.float32)
    images[:, 2:6, 1:4] = [1.0, 0.0, 0.0]
    masks = np.zeros((count, size, size), np.int64)
    masks[:, 2:6, 1:4] = 1
    return images, masks


def test_segmentation_panels_show_truth_and_prediction_and_a_legend_of_drawn_classes():
    images, truth = _scene()
    predicted = truth.copy()
    predicted[1, 0, 0] = 2
    figure = overlays._segmentation_figure(images, predicted, class_names=NAMES, true_masks=truth, alpha=0.5)
    titled = [axis for axis in figure.axes if axis.get_images()]
    assert [axis.get_title() for axis in titled] == ["#0 truth", "#0 prediction", "#1 truth", "#1 prediction"]
    np.testing.assert_allclose(titled[3].get_images()[0].get_array(), overlays.blend_mask(images[1], predicted[1]))
    np.testing.assert_allclose(titled[2].get_images()[0].get_array(), overlays.blend_mask(images[1], truth[1]))
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["cat", "dog"]  # no background


def test_segmentation_without_truth_has_one_panel_per_example():
    images, masks = _scene(count=3)
    figure = overlays._segmentation_figure(images, masks, class_names=NAMES, columns=2)
    assert sum(bool(axis.get_images()) for axis in figure.axes) == 3
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["cat"]


def _assert_png(path, *, min_width):
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width >= min_width and picture.height >= 200


def test_draw_segmentations_and_detections_write_pngs(tmp_path):
    images, masks = _scene()
    path = overlays.draw_segmentations(images, masks, tmp_path / "seg.png", class_names=NAMES, true_masks=masks,
                                       title="masks")
    assert path == str(tmp_path / "seg.png")
    _assert_png(path, min_width=4 * 250)  # two examples of two panels, about 3 inches each
    detections = [{"boxes": [[1, 2, 4, 6]], "scores": [0.9], "classes": [0]}] * 2
    path = overlays.draw_detections(images, detections, str(tmp_path / "det.png"), class_names=["cat"])
    _assert_png(path, min_width=2 * 250)
    assert not [name for name in tmp_path.iterdir() if name.name.endswith(".tmp")]


def _patches(figure, gid):
    return [patch for axis in figure.axes for patch in axis.patches if patch.get_gid() == gid]


def _texts(figure, gid):
    return [text.get_text() for axis in figure.axes for text in axis.texts if text.get_gid() == gid]


def test_detection_rectangle_lies_on_the_pixel_edges_of_its_box():
    images, _ = _scene(count=1, size=8)
    box = [1.0, 2.0, 4.0, 6.0]  # the red square's pixels: columns 1..3, rows 2..5
    figure = overlays._detection_figure(images, [{"boxes": [box], "scores": [0.9], "classes": [0]}],
                                        class_names=["cat"])
    (rectangle,) = _patches(figure, "prediction")
    axis = rectangle.axes
    # Where imshow put the image's outer edges: an edge coordinate e maps to left + e * (right - left) / W.
    left, right, bottom, top = axis.get_images()[0].get_extent()
    to_x = lambda e: left + e * (right - left) / 8  # noqa: E731
    to_y = lambda e: top + e * (bottom - top) / 8  # noqa: E731
    corners = rectangle.get_patch_transform().transform([[0, 0], [1, 1]])
    np.testing.assert_allclose(corners, [[to_x(box[0]), to_y(box[1])], [to_x(box[2]), to_y(box[3])]])
    np.testing.assert_allclose(rectangle.get_xy(), (0.5, 1.5))
    # And the same on screen: the rectangle's display box is the red square's.
    figure.canvas.draw()
    np.testing.assert_allclose(rectangle.get_window_extent().get_points(),
                               axis.transData.transform([[to_x(1), to_y(6)], [to_x(4), to_y(2)]]), atol=1.5)
    assert axis.get_xlim() == (-0.5, 7.5) and axis.get_ylim() == (7.5, -0.5)


def test_detections_below_threshold_are_hidden_and_labels_name_class_and_score():
    images, _ = _scene(count=1)
    detections = [{"boxes": [[1, 2, 4, 6], [0, 0, 2, 2], [5, 5, 7, 7]], "scores": [0.874, 0.29, 0.3],
                   "classes": [1, 0, 0]}]
    truths = [{"boxes": [[1, 2, 4, 6]], "classes": [1]}]
    figure = overlays._detection_figure(images, detections, class_names=["cat", "dog"], ground_truths=truths,
                                        score_threshold=0.3)
    predictions = _patches(figure, "prediction")
    assert [tuple(p.get_xy()) for p in predictions] == [(0.5, 1.5), (4.5, 4.5)]
    # Class c takes colour c + 1: colour 0 is the segmentation background's.
    np.testing.assert_allclose(predictions[0].get_edgecolor()[:3], overlays.PALETTE[2] / 255)
    assert _texts(figure, "prediction-label") == ["dog 0.87", "cat 0.30"]
    (truth,) = _patches(figure, "truth")
    (backing,) = _patches(figure, "truth-backing")
    assert truth.get_linestyle() not in ("-", "solid") and truth.get_edgecolor()[:3] == (1.0, 1.0, 1.0)
    assert backing.get_edgecolor()[:3] == (0.0, 0.0, 0.0) and predictions[0].get_linestyle() in ("-", "solid")
    assert tuple(truth.get_xy()) == (0.5, 1.5) and _texts(figure, "truth-label") == ["dog"]
    assert [text.get_text() for text in figure.legends[0].get_texts()][1] == "ground truth"


@pytest.mark.parametrize("detections, truths, match", [
    ([], None, "0 entries for 1 images"),
    ([{"boxes": [[0, 0, 1]], "scores": [1.0], "classes": [0]}], None, r"boxes'\] of shape \(1, 3\)"),
    ([{"boxes": [[3, 0, 1, 1]], "scores": [1.0], "classes": [0]}], None, "x1 <= x2"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [1.0], "classes": [2]}], None, r"class indices in \[0, 2\)"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [1.0, 0.5], "classes": [0]}], None, r"scores'\] of shape \(2,\)"),
    ([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], None, "missing 'scores'"),
    ([{"boxes": np.zeros((0, 4)), "scores": [], "classes": []}], [], "ground_truths: 0 entries"),
])
def test_draw_detections_rejects_bad_inputs(tmp_path, detections, truths, match):
    images, _ = _scene(count=1)
    with pytest.raises(ValueError, match=match) as error:
        overlays.draw_detections(images, detections, tmp_path / "x.png", class_names=["cat", "dog"],
                                 ground_truths=truths)
    assert "\n" not in str(error.value) and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("masks, truths, names, match", [
    (np.zeros((2, 8, 7), int), None, NAMES, r"predicted_masks of shape \(2, 8, 7\): expected \(2, 8, 8\)"),
    (np.zeros((1, 8, 8), int), None, NAMES, r"expected \(2, 8, 8\)"),
    (np.full((2, 8, 8), 3), None, NAMES, r"value 3 is not a class index in \[0, 3\)"),
    (np.zeros((2, 8, 8), int), np.full((2, 8, 8), 5), NAMES, "Invalid true_masks: value 5"),
    (np.zeros((2, 8, 8), int), None, "cat", "class_names='cat'"),
])
def test_draw_segmentations_rejects_bad_inputs(tmp_path, masks, truths, names, match):
    images, _ = _scene()
    with pytest.raises(ValueError, match=match) as error:
        overlays.draw_segmentations(images, masks, tmp_path / "x.png", class_names=names, true_masks=truths)
    assert "\n" not in str(error.value)


def test_ignore_pixels_are_allowed_in_masks():
    images, masks = _scene(count=1)
    masks[0, 0, :] = 255
    figure = overlays._segmentation_figure(images, masks, class_names=NAMES)
    np.testing.assert_allclose(figure.axes[0].get_images()[0].get_array()[0], images[0, 0])
