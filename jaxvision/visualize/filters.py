"""What the first layer of a network learned: a CNN's first convolution kernels, a dense model's templates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxvision.visualize.feature_maps import weighted_layers
from jaxvision.visualize.grids import min_max_scale, plot_grid


def _kernel(variables: dict[str, Any], name: str) -> np.ndarray:
    node = variables["params"]
    for part in name.split("/"):
        node = node[part]
    return np.asarray(node["kernel"], np.float32)


def first_layer(model: Any, variables: dict[str, Any], input_shape: Sequence[int]) -> tuple[str, int]:
    """``(name, kernel rank)`` of the layer ``first_layer_filters`` shows: the first convolution
    called, or for a model without convolutions the first dense layer.

    Raises:
      ValueError: the model has neither.
    """
    layers = weighted_layers(model, variables, input_shape)
    convolutions = [layer for layer in layers if layer[1] == 4]
    dense = [layer for layer in layers if layer[1] == 2]
    if convolutions:
        return convolutions[0]
    if dense:
        return dense[0]
    raise ValueError(f"Invalid model {type(model).__name__}: expected a convolution or a dense layer (a module with "
                     "a 'kernel' parameter) to show the filters of; it has neither")


def first_layer_filters(model: Any, variables: dict[str, Any], *, input_shape: Sequence[int]) -> np.ndarray:
    """The first layer's weights, one picture per output unit: ``[K, kh, kw, C]``.

    For a CNN: the first convolution's kernel (HWIO), one ``[kh, kw, C]`` filter per output channel.
    For a model without convolutions (an MLP, the perceptron): the first dense layer's kernel
    ``W [H*W*C, K]``, column k reshaped to the image (``W[:, k].reshape(H, W, C)``): for a linear
    classifier, the template of class k.

    Args:
      model: a flax module.
      variables: its variables.
      input_shape: one example's ``[H, W, C]`` (``Run.metadata["input_shape"]``); the model is traced
        on it to find its first layer, and dense weights are reshaped to it.

    Returns:
      float32 weights, exactly as stored, in ``[K, kh, kw, C]`` order (``[K, H, W, C]`` for dense).

    Raises:
      ValueError: the model has no convolution nor dense layer, or its first dense layer does not
        take the flattened image.
    """
    input_shape = tuple(int(size) for size in input_shape)
    name, rank = first_layer(model, variables, input_shape)
    kernel = _kernel(variables, name)
    if rank == 4:
        return np.ascontiguousarray(kernel.transpose(3, 0, 1, 2))
    if kernel.shape[0] != math.prod(input_shape):
        raise ValueError(f"Invalid first dense layer {name!r} of {kernel.shape[0]} inputs: expected the flattened "
                         f"image, {'x'.join(map(str, input_shape))} = {math.prod(input_shape)} inputs, to reshape "
                         "its weights to the image")
    return np.ascontiguousarray(kernel.T.reshape(kernel.shape[1], *input_shape))


def plot_filters(filters: np.ndarray, path: str, *, titles: Sequence[str] | None = None, max_filters: int = 64,
                 columns: int | None = None, title: str | None = None) -> np.ndarray:
    """Saves filters (from ``first_layer_filters``) as a grid PNG and returns the pictures shown.

    Each filter is min-max scaled on its own to [0, 1]; 3 channels are shown as RGB, 1 as grey,
    any other count as the grey mean of its channels.

    Args:
      filters: ``[K, kh, kw, C]``.
      path: the PNG to write.
      titles: one per filter (e.g. the class names of templates), or None for the filter's index.
      max_filters: the first ``max_filters`` are shown.
      columns: panels per row; None for about a square grid.
      title: the figure's title.

    Returns:
      The scaled filters shown, ``[min(K, max_filters), kh, kw, C]`` in [0, 1].
    """
    filters = np.asarray(filters, np.float32)
    if filters.ndim != 4 or not len(filters):
        raise ValueError(f"Invalid filters of shape {filters.shape}: expected [K, kh, kw, C] with K >= 1, "
                         "e.g. from first_layer_filters")
    shown = min_max_scale(filters[:max_filters])
    labels = list(titles)[:max_filters] if titles is not None else [str(index) for index in range(len(shown))]
    columns = columns or math.ceil(math.sqrt(len(shown)))
    plot_grid(shown, path, titles=labels, columns=columns, title=title, scale=1.0 if len(shown) > 16 else 1.4)
    return shown
