"""Where in an image a network looks: input-gradient saliency and Grad-CAM, and a picture of both.

Saliency (Simonyan et al., 2014) is ``|d logit / d input|``, the largest over the channels. Grad-CAM
(Selvaraju et al., 2017) weighs a convolution's output channels by the mean gradient of the logit
over each channel's map and keeps the positive part of their sum: coarser, but class-specific.
The gradient with respect to a layer's output is taken by adding a zero perturbation to that output
(``flax.linen.intercept_methods``) and differentiating with respect to it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.visualize.feature_maps import capture_outputs, check_layers, conv_layer_names, one_image
from jaxvision.visualize.grids import as_unit_images, display_channels, pyplot, save_figure


def _check_target(target: int, num_classes: int) -> int:
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < num_classes:
        raise ValueError(f"Invalid target {target!r}: expected a class index in [0, {num_classes}), or None for "
                         "the predicted class")
    return int(target)


@functools.partial(jax.jit, static_argnames="model")
def _logits(variables: dict[str, Any], images: jax.Array, *, model: Any) -> jax.Array:
    return model.apply(variables, images, train=False)


def _resolve_target(model: Any, variables: dict[str, Any], image: jax.Array, target: int | None) -> int:
    logits = _logits(variables, image[None], model=model)[0]
    return int(jnp.argmax(logits)) if target is None else _check_target(target, logits.shape[-1])


def _unit_max(values: jax.Array) -> np.ndarray:
    """``values`` (>= 0) divided by their maximum; all zeros stay zeros."""
    values = np.asarray(values, np.float32)
    peak = values.max()
    return values / peak if peak > 0 else np.zeros_like(values)


@functools.partial(jax.jit, static_argnames="model")
def _input_gradient(variables: dict[str, Any], image: jax.Array, target: jax.Array, *, model: Any) -> jax.Array:
    return jax.grad(lambda x: model.apply(variables, x[None], train=False)[0, target])(image)


def saliency(model: Any, variables: dict[str, Any], image: Any, *, target: int | None = None) -> np.ndarray:
    """The input-gradient saliency map of one image: ``[H, W]`` in [0, 1].

    Args:
      model: a flax module.
      variables: its variables.
      image: ``[H, W, C]`` float32 as the model takes it (``Run.preprocess(images)[0]``).
      target: the class whose logit is differentiated; None for the predicted one.

    Returns:
      ``max over channels of |d logit_target / d image|``, divided by its maximum.
    """
    image = one_image(image)
    target = _resolve_target(model, variables, image, target)
    gradient = _input_gradient(variables, image, jnp.asarray(target), model=model)
    return _unit_max(jnp.abs(gradient).max(axis=-1))


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _class_activation_map(variables: dict[str, Any], image: jax.Array, target: jax.Array, *, model: Any,
                          layer: str) -> jax.Array:
    """``relu(sum_k mean_ij(dy/dz_ijk) relu(z_ijk))`` at the layer's resolution, ``[h, w]``."""
    path = tuple(layer.split("/"))
    _, outputs = capture_outputs(model, variables, image[None], [layer])

    def target_logit(perturbation: jax.Array) -> jax.Array:
        def perturb(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
            output = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and tuple(context.module.path) == path:
                return output + perturbation
            return output

        with nn.intercept_methods(perturb):
            return model.apply(variables, image[None], train=False)[0, target]

    # Grad-CAM weighs the rectified feature maps (Selvaraju et al. use a ReLU network's conv features): the
    # zoo's convolutions return pre-activation values, whose weighted sum is often negative everywhere.
    activation = jax.nn.relu(outputs[layer][0])  # [h, w, channels]
    gradient = jax.grad(target_logit)(jnp.zeros_like(outputs[layer]))[0]
    weights = gradient.mean(axis=(0, 1))  # one per channel: the global-average-pooled gradient
    return jax.nn.relu(jnp.tensordot(activation, weights, axes=([-1], [0])))


def _resize_bilinear(values: jax.Array, size: Sequence[int]) -> jax.Array:
    # Half-pixel centres, edges clamped: what torch's interpolate(align_corners=False) and OpenCV do.
    return jax.image.resize(values, tuple(size), method="bilinear")


def grad_cam(model: Any, variables: dict[str, Any], image: Any, *, target: int | None = None,
             layer: str | None = None) -> np.ndarray:
    """The Grad-CAM map of one image on a convolution's output, upsampled to the image: ``[H, W]`` in [0, 1].

    Args:
      model: a flax module with convolutions.
      variables: its variables.
      image: ``[H, W, C]`` float32 as the model takes it (``Run.preprocess(images)[0]``).
      target: the class whose logit is differentiated; None for the predicted one.
      layer: a convolution's name (see ``conv_layer_names``); None for the last one called. A layer
        called more than once is perturbed at every call and read at its first.

    Returns:
      ``relu(sum_k mean_ij(dy/dz_ijk) relu(z_ijk))`` with ``z`` the convolution's output (before batch
      norm or activation), rectified as Grad-CAM's ReLU feature maps are, and ``y`` the target's logit;
      resized bilinearly to ``[H, W]`` and divided by its maximum (zeros if nothing is positive).

    Raises:
      ValueError: a model without convolutions, an unknown layer, or a target out of range.
    """
    image = one_image(image)
    known = conv_layer_names(model, variables, image.shape)
    layer = known[-1] if layer is None and known else layer
    check_layers([layer] if layer is not None else [], known)
    target = _resolve_target(model, variables, image, target)
    cam = _class_activation_map(variables, image, jnp.asarray(target), model=model, layer=layer)
    return _unit_max(_resize_bilinear(cam, image.shape[:2]))


def plot_saliency(image: Any, saliency_map: np.ndarray, cam: np.ndarray, path: str, *, label: str,
                  layer: str | None = None, title: str | None = None) -> None:
    """Saves three panels as a PNG: the image, its saliency map, and Grad-CAM over the image.

    Args:
      image: ``[H, W, C]`` as shown to a person: uint8 0-255 or float in [0, 1] (not normalised).
      saliency_map: ``[H, W]`` in [0, 1] from ``saliency``.
      cam: ``[H, W]`` in [0, 1] from ``grad_cam``.
      path: the PNG to write.
      label: what the maps explain, e.g. ``"7 (0.98)"``: a class name and its probability.
      layer: the convolution Grad-CAM used, for its panel's title.
      title: the figure's title.
    """
    pixels = display_channels(as_unit_images(np.asarray(image)[None]))[0]
    for name, values in (("saliency_map", saliency_map), ("cam", cam)):
        if np.shape(values) != pixels.shape[:2]:
            raise ValueError(f"Invalid {name} of shape {np.shape(values)}: expected the image's "
                             f"{pixels.shape[0]}x{pixels.shape[1]}")
    plt = pyplot()
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=-1)
    figure, (image_axis, saliency_axis, cam_axis) = plt.subplots(1, 3, figsize=(11, 4))
    image_axis.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
    image_axis.set_title(f"image: {label}")
    shown = saliency_axis.imshow(saliency_map, cmap="hot", vmin=0.0, vmax=1.0)
    saliency_axis.set_title("saliency |d logit / d input|")
    figure.colorbar(shown, ax=saliency_axis, fraction=0.046)
    cam_axis.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0)
    shown = cam_axis.imshow(cam, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.5)
    cam_axis.set_title(f"Grad-CAM on {layer}" if layer else "Grad-CAM")
    figure.colorbar(shown, ax=cam_axis, fraction=0.046)
    for axis in (image_axis, saliency_axis, cam_axis):
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
