"""Pictures of segmentation masks and detection boxes over the images they describe.

Colours come from ``PALETTE``, the PASCAL VOC colour map, so a mask drawn here has the colours of VOC's
``SegmentationClass`` PNGs. Segmentation class 0 is the background and is left transparent; detection
classes have no background, so detection class ``c`` takes colour ``c + 1`` (a ``shapes`` square is then
the same colour as a box and as a mask).

Boxes are ``(x1, y1, x2, y2)`` pixel *edges* as in ``jaxvision.boxes``: the image spans ``[0, W] x [0, H]``.
``imshow`` puts pixel centres at integer coordinates, so edge ``x`` is drawn at ``x - 0.5``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxvision.visualize.grids import as_unit_images, pyplot, save_figure


def _voc_palette(count: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: the bits of index ``i`` dealt round-robin to R, G, B from the top bit down."""
    colours = np.zeros((count, 3), np.uint8)
    for index in range(count):
        code, rgb = index, [0, 0, 0]
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << bit
            code >>= 3
        colours[index] = rgb
    return colours


# [256, 3] uint8, all rows distinct; row 0 (black) is the background's, row 255 VOC's "void" colour.
PALETTE = _voc_palette()
PALETTE.setflags(write=False)

_PANEL_INCHES = 3.0
_TRUTH_DASHES = (0, (3, 3))


def class_colors(num_classes: int) -> np.ndarray:
    """The first ``num_classes`` rows of ``PALETTE``, ``[num_classes, 3]`` uint8 (a copy)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 1 <= num_classes <= len(PALETTE):
        raise ValueError(f"Invalid num_classes={num_classes!r}: expected an int in [1, {len(PALETTE)}], "
                         "the number of classes including the background")
    return PALETTE[:num_classes].copy()


def _rgb_images(images: Any, name: str = "images") -> np.ndarray:
    """``[N, H, W, 1 or 3]`` (uint8 or float in [0, 1]) as float32 RGB ``[N, H, W, 3]``; grey is repeated."""
    pixels = as_unit_images(images)
    if pixels.shape[-1] not in (1, 3):
        raise ValueError(f"Invalid {name} with {pixels.shape[-1]} channels: expected 1 (grey) or 3 (RGB); "
                         "pass images[..., :3] for RGBA")
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _check_masks(masks: Any, shape: tuple[int, ...], name: str, *, num_classes: int,
                 ignore_index: int | None) -> np.ndarray:
    """``masks`` as int64 of ``shape``, every value a class index in [0, num_classes) or ``ignore_index``."""
    masks = np.asarray(masks)
    if masks.shape != shape:
        raise ValueError(f"Invalid {name} of shape {masks.shape}: expected {shape}, one class index per image "
                         "pixel; squeeze a trailing channel axis (mask[..., 0])")
    if not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"Invalid {name} of dtype {masks.dtype}: expected integer class indices; "
                         "take argmax of the logits, or .astype(np.int32)")
    masks = masks.astype(np.int64)
    bad = (masks < 0) | (masks >= num_classes)
    if ignore_index is not None:
        bad &= masks != ignore_index
    if bad.any():
        raise ValueError(f"Invalid {name}: value {int(masks[bad][0])} is not a class index in [0, {num_classes}) "
                         f"nor ignore_index={ignore_index}; pass one class name per class")
    return masks


def _blend(pixels: np.ndarray, masks: np.ndarray, alpha: float, ignore_index: int | None) -> np.ndarray:
    """``pixels`` RGB ``[..., 3]`` with each pixel of class c > 0 mixed with ``alpha`` of colour c."""
    coloured = masks > 0
    if ignore_index is not None:
        coloured &= masks != ignore_index
    colours = PALETTE.astype(np.float32) / 255.0
    blended = pixels.astype(np.float32, copy=True)
    blended[coloured] = (1.0 - alpha) * blended[coloured] + alpha * colours[masks[coloured]]
    return blended


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float, np.floating)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"Invalid alpha={alpha!r}: expected a float in [0, 1] (0 hides the mask, 1 hides the image)")
    return float(alpha)


def blend_mask(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5, ignore_index: int | None = 255) -> np.ndarray:
    """Colours one image's pixels by class, over the image.

    Args:
      image: ``[H, W, C]``, C = 1 (grey, repeated to RGB) or 3; float in [0, 1] or uint8 0-255.
      mask: ``[H, W]`` integer class indices in [0, 256), or ``ignore_index``.
      alpha: how much of the class colour a coloured pixel takes.
      ignore_index: a label that is left uncoloured (VOC's 255 "void" boundary), or None.

    Returns:
      ``[H, W, 3]`` float32: ``(1 - alpha) * image + alpha * PALETTE[c] / 255`` where the class c > 0;
      the image where the class is 0 or ``ignore_index``.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"Invalid image of shape {image.shape}: expected [height, width, channels] for one image")
    pixels = _rgb_images(image[None], "image")[0]
    mask = _check_masks(mask, pixels.shape[:2], "mask", num_classes=len(PALETTE), ignore_index=ignore_index)
    return _blend(pixels, mask, _check_alpha(alpha), ignore_index)


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(f"Invalid class_names={class_names!r}: expected a non-empty list of names, one per class")
    return [str(name) for name in class_names]


def _check_columns(columns: int) -> int:
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"Invalid columns={columns!r}: expected a positive int, the examples per row")
    return int(columns)


def _grid(count: int, columns: int, panels_per_example: int) -> tuple[Any, np.ndarray]:
    """A constrained-layout figure of ``ceil(count / columns)`` rows of ``columns`` examples, all axes off."""
    plt = pyplot()
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns * panels_per_example, squeeze=False, layout="constrained",
                                figsize=(_PANEL_INCHES * columns * panels_per_example, _PANEL_INCHES * rows + 0.8))
    for axis in axes.flat:
        axis.axis("off")
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no images", ha="center", va="center")
    return figure, axes.reshape(-1, panels_per_example)[:count] if count else axes


def _segmentation_figure(images: Any, predicted_masks: Any, *, class_names: Sequence[str],
                         true_masks: Any = None, columns: int = 4, title: str | None = None,
                         alpha: float = 0.5, ignore_index: int | None = 255) -> Any:
    """The figure ``draw_segmentations`` saves (returned open, so tests can inspect its artists)."""
    names = _check_class_names(class_names)
    if len(names) > len(PALETTE):
        raise ValueError(f"Invalid class_names: {len(names)} classes, but PALETTE has {len(PALETTE)} colours")
    pixels = _rgb_images(images)
    shape = pixels.shape[:3]
    predicted = _check_masks(predicted_masks, shape, "predicted_masks", num_classes=len(names),
                             ignore_index=ignore_index)
    truth = None if true_masks is None else _check_masks(true_masks, shape, "true_masks", num_classes=len(names),
                                                         ignore_index=ignore_index)
    alpha = _check_alpha(alpha)
    panels = [("truth", truth), ("prediction", predicted)] if truth is not None else [(None, predicted)]
    figure, axes = _grid(len(pixels), _check_columns(columns), len(panels))
    for index in range(len(pixels)):
        for axis, (label, masks) in zip(axes[index], panels):
            axis.imshow(_blend(pixels[index], masks[index], alpha, ignore_index), vmin=0.0, vmax=1.0,
                        interpolation="nearest")
            if label:
                axis.set_title(f"#{index} {label}", fontsize=9)
    # Only the classes drawn: a legend of all 150 ADE20K classes would dwarf the pictures.
    drawn = np.unique(np.concatenate([predicted.ravel(), truth.ravel() if truth is not None else []]))
    drawn = [int(c) for c in drawn if 0 < c < len(names) and c != ignore_index]
    if drawn:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=PALETTE[c] / 255.0, edgecolor="black", label=names[c]) for c in drawn]
        figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


def draw_segmentations(images: Any, predicted_masks: Any, path: str | os.PathLike, *, class_names: Sequence[str],
                       true_masks: Any = None, columns: int = 4, title: str | None = None,
                       alpha: float = 0.5, ignore_index: int | None = 255) -> str:
    """Saves a grid of images with their class masks over them, and a legend of the classes drawn, as a PNG.

    Args:
      images: ``[N, H, W, C]`` float in [0, 1] or uint8, C = 1 or 3, as shown to a person (not normalised).
      predicted_masks: ``[N, H, W]`` integer class indices in [0, len(class_names)), or ``ignore_index``.
      path: the PNG to write.
      class_names: one per class, index 0 the background (drawn transparent, left out of the legend).
      true_masks: like ``predicted_masks``; when given each example shows two panels, truth | prediction.
      columns: examples per row.
      title: the figure's title.
      alpha: how much of the class colour a coloured pixel takes.
      ignore_index: a label left uncoloured, or None.

    Returns:
      ``path``, as a string.

    Raises:
      ValueError: masks of another shape than the images, a class index outside ``class_names``.
    """
    figure = _segmentation_figure(images, predicted_masks, class_names=class_names, true_masks=true_masks,
                                  columns=columns, title=title, alpha=alpha, ignore_index=ignore_index)
    path = os.fspath(path)
    save_figure(figure, path)
    return path


def _check_boxes(entries: Any, count: int, name: str, *, num_classes: int,
                 with_scores: bool) -> list[dict[str, np.ndarray]]:
    """Each of ``entries`` as {"boxes" [K, 4] float64, "classes" [K] int64(, "scores" [K] float64)}."""
    if isinstance(entries, Mapping) or len(entries) != count:
        got = "a dict" if isinstance(entries, Mapping) else f"{len(entries)} entries"
        raise ValueError(f"Invalid {name}: {got} for {count} images; expected a list with one dict per image")
    keys = ("boxes", "classes", "scores") if with_scores else ("boxes", "classes")
    checked = []
    for index, entry in enumerate(entries):
        where = f"{name}[{index}]"
        missing = [key for key in keys if not isinstance(entry, Mapping) or key not in entry]
        if missing:
            raise ValueError(f"Invalid {where}: missing {', '.join(repr(key) for key in missing)}; "
                             f"expected a dict with keys {', '.join(repr(key) for key in keys)}")
        boxes = np.asarray(entry["boxes"], np.float64)
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Invalid {where}['boxes'] of shape {boxes.shape}: expected [K, 4] (x1, y1, x2, y2) "
                             "pixels; reshape them to [-1, 4]")
        if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
            row = int(np.flatnonzero(~np.isfinite(boxes).all(1) | (boxes[:, 2:] < boxes[:, :2]).any(1))[0])
            raise ValueError(f"Invalid {where}['boxes'][{row}] = {boxes[row].tolist()}: expected finite "
                             "(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2; convert yxyx or cxcywh boxes first")
        classes = np.asarray(entry["classes"])
        if classes.shape != (len(boxes),):
            raise ValueError(f"Invalid {where}['classes'] of shape {classes.shape}: expected [{len(boxes)}], "
                             "one class index per box")
        if classes.size and not (np.isfinite(classes).all() and (classes == np.round(classes)).all()
                                 and classes.min() >= 0 and classes.max() < num_classes):
            raise ValueError(f"Invalid {where}['classes'] = {classes.tolist()}: expected class indices in "
                             f"[0, {num_classes}); pass one class name per class")
        result = {"boxes": boxes, "classes": classes.astype(np.int64)}
        if with_scores:
            scores = np.asarray(entry["scores"], np.float64)
            if scores.shape != (len(boxes),):
                raise ValueError(f"Invalid {where}['scores'] of shape {scores.shape}: expected [{len(boxes)}], "
                                 "one score per box")
            result["scores"] = scores
        checked.append(result)
    return checked


def _text_colour(colour: np.ndarray) -> str:
    """Black on light colours, white on dark ones (ITU-R BT.601 luma)."""
    return "black" if float(np.dot(colour, [0.299, 0.587, 0.114])) > 127.5 else "white"


def _draw_boxes(axis: Any, entry: dict[str, np.ndarray], names: list[str], height: int, *,
                score_threshold: float | None) -> None:
    """Predictions (``score_threshold`` given) solid in their class colour, labelled "name score" above;
    ground truth (None) dashed white over black, labelled "name" below, so either shows on any image.

    Ground truth is drawn wider, under the predictions, so a box that matches it exactly still shows both.
    """
    from matplotlib.patches import Rectangle

    for row, (box, cls) in enumerate(zip(entry["boxes"], entry["classes"])):
        if score_threshold is not None and not entry["scores"][row] >= score_threshold:
            continue
        # Edge coordinates to imshow's, whose pixel centres sit on integers.
        x1, y1, x2, y2 = box - 0.5
        corner, width, box_height = (x1, y1), x2 - x1, y2 - y1
        if score_threshold is not None:
            colour = PALETTE[cls + 1]
            axis.add_patch(Rectangle(corner, width, box_height, fill=False, edgecolor=colour / 255.0,
                                     linewidth=1.5, gid="prediction"))
            label, text_colour, face = f"{names[cls]} {entry['scores'][row]:.2f}", _text_colour(colour), colour / 255.0
            # Above the box, or inside it when the box touches the top (the label would leave the panel).
            at_top = box[1] < 0.1 * height
            position, va, gid = (x1, y1), "top" if at_top else "bottom", "prediction-label"
        else:
            axis.add_patch(Rectangle(corner, width, box_height, fill=False, edgecolor="black", linewidth=3.5,
                                     gid="truth-backing"))
            axis.add_patch(Rectangle(corner, width, box_height, fill=False, edgecolor="white", linewidth=3.5,
                                     linestyle=_TRUTH_DASHES, gid="truth"))
            label, text_colour, face = names[cls], "white", "black"
            at_bottom = box[3] > 0.9 * height
            position, va, gid = (x1, y2), "bottom" if at_bottom else "top", "truth-label"
        axis.text(*position, label, color=text_colour, fontsize=7, va=va, ha="left", clip_on=True, gid=gid,
                  bbox={"facecolor": face, "edgecolor": "none", "pad": 1.0, "alpha": 0.8})


def _detection_figure(images: Any, detections: Sequence[Mapping[str, Any]], *, class_names: Sequence[str],
                      ground_truths: Sequence[Mapping[str, Any]] | None = None, columns: int = 4,
                      score_threshold: float = 0.3, title: str | None = None) -> Any:
    """The figure ``draw_detections`` saves (returned open, so tests can inspect its artists)."""
    names = _check_class_names(class_names)
    if len(names) >= len(PALETTE):
        raise ValueError(f"Invalid class_names: {len(names)} classes, but PALETTE has colours for "
                         f"{len(PALETTE) - 1} detection classes")
    if not (isinstance(score_threshold, (int, float, np.floating)) and math.isfinite(score_threshold)):
        raise ValueError(f"Invalid score_threshold={score_threshold!r}: expected a finite float, e.g. 0.3")
    pixels = _rgb_images(images)
    predicted = _check_boxes(detections, len(pixels), "detections", num_classes=len(names), with_scores=True)
    truth = None if ground_truths is None else _check_boxes(ground_truths, len(pixels), "ground_truths",
                                                            num_classes=len(names), with_scores=False)
    figure, axes = _grid(len(pixels), _check_columns(columns), 1)
    height, width = pixels.shape[1:3]
    for index in range(len(pixels)):
        axis = axes[index, 0]
        axis.imshow(pixels[index], vmin=0.0, vmax=1.0, interpolation="nearest")
        if truth is not None:
            _draw_boxes(axis, truth[index], names, height, score_threshold=None)
        _draw_boxes(axis, predicted[index], names, height, score_threshold=float(score_threshold))
        # Patches may reach outside the image; keep the panel the image's size (they are clipped to it).
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
        shown = int((predicted[index]["scores"] >= score_threshold).sum())
        axis.set_title(f"#{index}: {shown} detection{'' if shown == 1 else 's'}", fontsize=9)
    if truth is not None:
        from matplotlib.lines import Line2D

        prediction = Line2D([], [], color="dimgray", linewidth=1.5)
        # A tuple handle draws its lines over each other: white dashes on black, as the boxes are drawn.
        truth_handle = (Line2D([], [], color="black", linewidth=3.5),
                        Line2D([], [], color="white", linewidth=3.5, linestyle=_TRUTH_DASHES))
        figure.legend(handles=[prediction, truth_handle],
                      labels=[f"prediction, class colour (score >= {score_threshold:g})", "ground truth"],
                      loc="outside lower center", ncol=2, fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


def draw_detections(images: Any, detections: Sequence[Mapping[str, Any]], path: str | os.PathLike, *,
                    class_names: Sequence[str], ground_truths: Sequence[Mapping[str, Any]] | None = None,
                    columns: int = 4, score_threshold: float = 0.3, title: str | None = None) -> str:
    """Saves a grid of images with their detected boxes (and ground truth) drawn on them, as a PNG.

    Args:
      images: ``[N, H, W, C]`` float in [0, 1] or uint8, C = 1 or 3, as shown to a person (not normalised).
      detections: one dict per image: "boxes" ``[K, 4]`` ``(x1, y1, x2, y2)`` pixel edges (the image spans
        ``[0, W] x [0, H]``), "scores" ``[K]``, "classes" ``[K]`` int in [0, len(class_names)).
      path: the PNG to write.
      class_names: one per detection class (no background).
      ground_truths: one dict per image with "boxes" and "classes", drawn dashed white on black; or None.
      columns: images per row.
      score_threshold: boxes scoring below it are not drawn.
      title: the figure's title.

    Returns:
      ``path``, as a string.

    Raises:
      ValueError: lists of another length than the images, boxes not ``[K, 4]`` or inverted, a class index
        outside ``class_names``.
    """
    figure = _detection_figure(images, detections, class_names=class_names, ground_truths=ground_truths,
                               columns=columns, score_threshold=score_threshold, title=title)
    path = os.fspath(path)
    save_figure(figure, path)
    return path
