"""PyTorch's default initialisation for the parameters of any zoo model, for like-for-like comparisons.

Flax initialises ``nn.Dense`` and ``nn.Conv`` kernels with LeCun normal (variance ``1 / fan_in``) and
biases with zeros. PyTorch's ``nn.Linear`` and ``nn.Conv2d`` draw both from ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``: variance ``1 / (3 fan_in)``), three times less.
Recipes tuned in one framework can train differently in the other for that reason alone.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from flax.traverse_util import flatten_dict, unflatten_dict


def pytorch_default_init(params: Any, key: jax.Array) -> Any:
    """``params`` with every kernel and its layer's bias redrawn as PyTorch's defaults draw them.

    A kernel ``[..., in, out]`` (a Dense's ``[in, out]`` or a Conv's ``[kh, kw, in / groups, out]``)
    has ``fan_in = prod(shape[:-1])``; it and the layer's ``bias`` are drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. Batch-norm scales and biases (no kernel beside them) keep
    their values (1 and 0, as in PyTorch).

    Args:
      params: a model's ``params`` collection.
      key: PRNG key; each layer gets ``fold_in(key, its index)`` in the tree's sorted order.

    Returns:
      A tree like ``params``.
    """
    flat = flatten_dict(params)
    layers = sorted({path[:-1] for path in flat if path[-1] == "kernel"})
    for index, layer in enumerate(layers):
        kernel = flat[layer + ("kernel",)]
        bound = 1.0 / math.sqrt(math.prod(kernel.shape[:-1]))
        kernel_key, bias_key = jax.random.split(jax.random.fold_in(key, index))
        flat[layer + ("kernel",)] = jax.random.uniform(kernel_key, kernel.shape, kernel.dtype, -bound, bound)
        if layer + ("bias",) in flat:
            bias = flat[layer + ("bias",)]
            flat[layer + ("bias",)] = jax.random.uniform(bias_key, bias.shape, bias.dtype, -bound, bound)
    return unflatten_dict(flat)


__all__ = ["pytorch_default_init"]
