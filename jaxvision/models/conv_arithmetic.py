"""Convolution arithmetic: output sizes and receptive fields, by hand, as the CS231n notes do them.

References:
  Dumoulin and Visin, "A guide to convolution arithmetic for deep learning", 2016.
  Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence


def conv_output_size(size: int, kernel_size: int, *, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one spatial axis: ``floor((W - D*(F-1) - 1 + 2P) / S) + 1``.

    With ``dilation=1`` this is the familiar ``(W - F + 2P) / S + 1``; when the division is not
    exact the last positions that do not fit a whole window are dropped, as in PyTorch and XLA.

    Args:
      size: input length W (height or width).
      kernel_size: filter length F (also for pooling windows).
      stride: step S between windows.
      padding: P positions added on each side.
      dilation: D; a dilated filter spans ``D*(F-1) + 1`` inputs.

    Returns:
      The output length, e.g. 28 for ``conv_output_size(32, 5)``.

    Raises:
      ValueError: if an argument is out of range or the filter does not fit the padded input.
    """
    for label, value, minimum in (("size", size, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                  ("padding", padding, 0), ("dilation", dilation, 1)):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"Invalid {label}={value!r}: expected an integer >= {minimum}.")
    span = dilation * (kernel_size - 1) + 1
    if span > size + 2 * padding:
        raise ValueError(
            f"A filter spanning {span} inputs (kernel_size={kernel_size}, dilation={dilation}) does not fit an "
            f"input of size {size} with padding {padding}: use a smaller filter or pad by at least "
            f"{(span - size + 1) // 2}."
        )
    return (size + 2 * padding - span) // stride + 1


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One sliding-window layer (convolution or pooling) along one spatial axis.

    Attributes:
      kernel_size: filter length F.
      stride: step S.
      padding: P on each side (does not change the receptive field, only where it sits).
      dilation: D.
    """

    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1


def _as_spec(layer: LayerSpec | Sequence[int]) -> LayerSpec:
    if isinstance(layer, LayerSpec):
        return layer
    if not 1 <= len(layer) <= 4:
        raise ValueError(
            f"Invalid layer {layer!r}: expected a LayerSpec or a tuple (kernel_size[, stride[, padding[, dilation]]])."
        )
    return LayerSpec(*layer)


def output_size(size: int, layers: Iterable[LayerSpec | Sequence[int]]) -> int:
    """Output length after a stack of layers, applying ``conv_output_size`` layer by layer.

    Args:
      size: input length.
      layers: LayerSpecs or tuples ``(kernel_size[, stride[, padding[, dilation]]])``, input side first.

    Returns:
      The length after the last layer.
    """
    for layer in map(_as_spec, layers):
        size = conv_output_size(
            size, layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation
        )
    return size


def receptive_field(layers: Iterable[LayerSpec | Sequence[int]]) -> int:
    """How many input positions (along one axis) one output of a stack of layers sees.

    With ``r`` the field so far and ``j`` the product of the strides so far (the "jump" between
    neighbouring outputs in input positions), each layer adds ``(D*(F-1)) * j``. Two stacked 3x3
    convolutions see 5x5 and three see 7x7 (the VGG argument); AlexNet's 11x11/4 conv followed by a
    3x3/2 pool sees 19x19.

    Args:
      layers: LayerSpecs or tuples ``(kernel_size[, stride[, padding[, dilation]]])``, input side first.

    Returns:
      The receptive field length; 1 for an empty stack.
    """
    field, jump = 1, 1
    for layer in map(_as_spec, layers):
        if layer.kernel_size < 1 or layer.stride < 1 or layer.dilation < 1:
            raise ValueError(f"Invalid layer {layer}: kernel_size, stride and dilation must be >= 1.")
        field += layer.dilation * (layer.kernel_size - 1) * jump
        jump *= layer.stride
    return field
