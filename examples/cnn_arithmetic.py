"""Counting parameters and output volumes: the seed lecture's CNN examples, then two small MLPs.

Every size comes from ``conv_output_size`` (``(W - F + 2P) / S + 1``) and is checked against the shape a
real ``flax.linen.Conv`` produces; every parameter count is counted from a real model's parameters.

    python examples/cnn_arithmetic.py
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxvision
from jaxvision.models import conv_output_size


def count_parameters(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Parameters of ``model`` on one example of ``input_shape``, from its shapes (nothing allocated)."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))


def conv_output_shape(input_shape: tuple[int, int, int], filters: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> tuple[int, ...]:
    """The output volume flax's Conv actually produces, [height, width, filters], from shapes alone."""
    conv = nn.Conv(filters, (kernel_size, kernel_size), strides=stride, padding=padding)
    variables = jax.eval_shape(lambda: conv.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    return jax.eval_shape(lambda v: conv.apply(v, jnp.zeros((1, *input_shape))), variables).shape[1:]


def main(filters: int = 6) -> dict[str, object]:
    """Prints each worked example and returns its numbers."""
    results: dict[str, object] = {}

    size = conv_output_size(32, 5)
    shape = conv_output_shape((32, 32, 3), filters, 5)
    per_filter = 5 * 5 * 3 + 1
    counted = count_parameters(nn.Conv(filters, (5, 5), padding=0), (32, 32, 3))
    print(f"5x5x3 filters on a 32x32x3 image, stride 1, no padding: (32 - 5)/1 + 1 = {size}, so {size}x{size} per filter")
    print(f"  {filters} filters: output volume {'x'.join(map(str, shape))}; parameters 5*5*3 + 1 = {per_filter} per filter, "
          f"{filters} * {per_filter} = {filters * per_filter} (counted: {counted})")
    results.update(size_32_5=size, volume_32_5=shape, parameters_per_filter=per_filter, parameters_conv=counted)

    print("zero padding (F - 1)/2 keeps a 32x32 input at 32x32 (stride 1):")
    kept = {}
    for kernel_size in (3, 5, 7):
        padding = (kernel_size - 1) // 2
        kept[kernel_size] = conv_output_size(32, kernel_size, padding=padding)
        flax_shape = conv_output_shape((32, 32, 3), filters, kernel_size, padding=padding)
        print(f"  F = {kernel_size}, P = {padding}: (32 - {kernel_size} + 2*{padding})/1 + 1 = {kept[kernel_size]} (flax: {flax_shape[0]}x{flax_shape[1]})")
    results["padded_sizes"] = kept

    print("a 7x7 input and a 3x3 kernel:")
    strided = {}
    for stride in (1, 2, 3):
        exact = (7 - 3) % stride == 0
        strided[stride] = conv_output_size(7, 3, stride=stride)
        note = "" if exact else f" (does not fit: (7 - 3)/{stride} + 1 = {(7 - 3) / stride + 1:.2f}; the last column is dropped)"
        print(f"  stride {stride}: {strided[stride]}x{strided[stride]}{note}")
    results["sizes_7_3"] = strided

    mlp_3_4_2 = count_parameters(jaxvision.get_model("mlp", num_classes=2, hidden_sizes=(4,)), (3,))
    mlp_3_4_4_1 = count_parameters(jaxvision.get_model("mlp", num_classes=1, hidden_sizes=(4, 4)), (3,))
    print(f"MLP 3-4-2: (3*4 + 4) + (4*2 + 2) = {mlp_3_4_2} parameters")
    print(f"MLP 3-4-4-1: (3*4 + 4) + (4*4 + 4) + (4*1 + 1) = {mlp_3_4_4_1} parameters")
    results.update(mlp_3_4_2=mlp_3_4_2, mlp_3_4_4_1=mlp_3_4_4_1)
    return results


if __name__ == "__main__":
    main()
