"""On-device, per-example, PRNG-driven data augmentation, run inside the jitted train step.

Every op is a pure function of an explicit key; a pipeline draws one key per example with
``jax.random.split(key, batch_size)`` and ``vmap``s, so each example gets its own draw and a run is
reproducible from its seed (the train step derives the augmentation key from ``fold_in(key, step)``,
so a resumed run sees the same augmentations).

Modules:
  affine:      3x3 matrices and ``warp_affine``, the single bilinear resample of a fused chain.
  geometric:   flips, crop after padding, resized crop, translate, rotate, shear, stretch, zoom.
  photometric: brightness, contrast, saturation, hue, gamma, grayscale, vignette, jitter.
  mixing:      cutout, random erasing (per image); mixup, cutmix (per batch, soft labels).
  spec:        ``parse_augment_spec("flip,crop:4,rotate:15")`` -> a ``(key, batch) -> batch`` pipeline.
  tta:         ``predict_tta`` / ``evaluate_tta``: softmax averaged over flips, shifts and zooms.

Example:
  >>> pipeline = parse_augment_spec("flip,crop:4,jitter:0.2", mean=splits.meta.mean, std=splits.meta.std)
  >>> state = create_train_state(model, shape, optimizer, key, augment=pipeline)
"""

from jaxvision.augment.affine import FILL_MODES, compose, warp_affine
from jaxvision.augment.geometric import (
    flip_left_right,
    flip_up_down,
    random_crop,
    random_flip_left_right,
    random_flip_up_down,
    random_resized_crop,
    random_rotate,
    random_shear,
    random_stretch,
    random_translate,
    random_zoom,
    rotate,
    shear,
)
from jaxvision.augment.mixing import cutmix, cutout, mixup, random_erasing, soft_labels
from jaxvision.augment.photometric import (
    adjust_brightness,
    adjust_contrast,
    adjust_gamma,
    adjust_hue,
    adjust_saturation,
    random_brightness,
    random_contrast,
    random_gamma,
    random_grayscale,
    random_hue,
    random_jitter,
    random_saturation,
    random_vignette,
    to_grayscale,
    vignette,
)
from jaxvision.augment.spec import OPS, AugmentOp, AugmentPipeline, describe_augmentations, parse_augment_spec
from jaxvision.augment.targets import TargetAugment, refuse_mixing, warp_boxes, warp_mask
from jaxvision.augment.tta import count_views, evaluate_tta, make_tta_eval_step, predict_tta, view_matrices

__all__ = [
    "FILL_MODES",
    "OPS",
    "AugmentOp",
    "AugmentPipeline",
    "TargetAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_gamma",
    "adjust_hue",
    "adjust_saturation",
    "compose",
    "count_views",
    "cutmix",
    "cutout",
    "describe_augmentations",
    "refuse_mixing",
    "evaluate_tta",
    "flip_left_right",
    "flip_up_down",
    "make_tta_eval_step",
    "mixup",
    "parse_augment_spec",
    "predict_tta",
    "random_brightness",
    "random_contrast",
    "random_crop",
    "random_erasing",
    "random_flip_left_right",
    "random_flip_up_down",
    "random_gamma",
    "random_grayscale",
    "random_hue",
    "random_jitter",
    "random_resized_crop",
    "random_rotate",
    "random_saturation",
    "random_shear",
    "random_stretch",
    "random_translate",
    "random_vignette",
    "random_zoom",
    "rotate",
    "shear",
    "soft_labels",
    "to_grayscale",
    "vignette",
    "view_matrices",
    "warp_affine",
    "warp_boxes",
    "warp_mask",
]
