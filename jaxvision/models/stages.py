"""A classifier's feature maps at every resolution, for dense heads (U-Net decoders, CenterNet).

timm's ``features_only`` without touching the zoo model: ``nn.intercept_methods`` sees every call
of the backbone's top-level modules during an ordinary ``apply``, so the outputs of the modules that
end each resolution can be returned, while the backbone's parameters keep their classification
layout (pretrained weights load into the ``"backbone"`` subtree unchanged).

Pooling is a function in the zoo (``nn.max_pool``), not a module, so the last module at a
resolution is the one *before* the downsampling pool: the full-resolution map a U-Net wants as a
skip. Where a model applies its activation as a function after a norm module (VGG's ``bn``, ResNet's
``stem_bn``), the captured map is pre-activation; the decoders apply ``nn.relu`` to every stage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# A decoder wants a handful of levels; deeper classifiers (VGG on 224x224) have more resolutions.
MAX_STAGES = 5


def _child_recorder(base: tuple[str, ...], outputs: dict[str, Any]) -> Callable[..., Any]:
    """An interceptor that stores the output of each direct child of the module at scope path
    ``base`` under its name, the first time it is called (a shared module's first use)."""

    def record(next_fun, args, kwargs, context):
        output = next_fun(*args, **kwargs)
        scope = context.module.scope
        if (
            context.method_name == "__call__"
            and scope is not None
            and len(scope.path) == len(base) + 1
            and tuple(scope.path[: len(base)]) == base
            and scope.path[-1] not in outputs
        ):
            outputs[scope.path[-1]] = output
        return output

    return record


def _checked_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(
            f"Invalid input_shape={input_shape!r}: expected one image's (height, width, channels) as positive "
            f"integers, e.g. input_shape=(64, 64, 3)."
        )
    return shape  # type: ignore[return-value]


def stage_layers(backbone: nn.Module, input_shape: Sequence[int]) -> tuple[str, ...]:
    """Names of the backbone's top-level modules that end each resolution, highest resolution first.

    The backbone's ``init`` is traced on one abstract image (``jax.eval_shape``: nothing is
    allocated or compiled) and every top-level module's output recorded in call order. Of the 4-D
    outputs, the last one at each spatial size (height, width) names that resolution's stage; sizes
    below 2x2 are dropped (nothing left to decode) and, if more than ``MAX_STAGES`` remain, the
    highest-resolution ones go first, so the deepest ``MAX_STAGES`` are kept.

    On 64x64x3: resnet20 gives ``stage1_block3`` (64x64), ``stage2_block3`` (32x32), ``stage3_block3``
    (16x16); resnet18 ``stem_bn`` (32x32), ``stage1_block2`` ... ``stage4_block2`` (16x16 to 2x2);
    vgg11_bn_cifar ``bn1``, ``bn2``, ``bn4``, ``bn6``, ``bn8`` (64x64 to 4x4).

    Args:
      backbone: a zoo model (any flax module with ``__call__(x, *, train)``).
      input_shape: one image's (height, width, channels), e.g. ``(64, 64, 3)``.

    Returns:
      The names, e.g. ``("stage1_block3", "stage2_block3", "stage3_block3")``.

    Raises:
      ValueError: for a bad input_shape, or a backbone with no module output of at least 2x2.
    """
    shape = _checked_input_shape(input_shape)
    outputs: dict[str, Any] = {}
    with nn.intercept_methods(_child_recorder((), outputs)):
        image = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
        jax.eval_shape(functools.partial(backbone.init, train=False), jax.random.key(0), image)
    last_at: dict[tuple[int, int], str] = {}
    for name, output in outputs.items():  # dicts keep insertion (call) order
        if getattr(output, "ndim", None) == 4 and output.shape[1] >= 2 and output.shape[2] >= 2:
            last_at[tuple(output.shape[1:3])] = name
    if not last_at:
        raise ValueError(
            f"{type(backbone).__name__} on {shape} has no module whose output is a feature map of at least 2x2: "
            f"pass a convolutional backbone or a larger input_shape."
        )
    by_resolution = sorted(last_at.items(), key=lambda item: -item[0][0] * item[0][1])
    return tuple(name for _, name in by_resolution[-MAX_STAGES:])


class BackboneStages(nn.Module):
    """Runs a backbone and returns the outputs of its ``layers`` instead of its logits.

    The backbone's head still runs (its result is discarded, and XLA drops the unused work under
    ``jit``) and keeps its parameters, so the backbone's variables are exactly the classifier's.

    Attributes:
      backbone: a zoo model; its variables live under ``"backbone"`` (of the module that owns it).
      layers: names of its top-level modules, e.g. from ``stage_layers``.
    """

    backbone: nn.Module
    layers: tuple[str, ...]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, ...]:
        """Maps images ``[N, H, W, C]`` to one ``[N, h_i, w_i, c_i]`` map per layer, in ``layers`` order.

        Raises:
          ValueError: if a name in ``layers`` is not a top-level module the backbone called.
        """
        outputs: dict[str, Any] = {}
        # The backbone is bound under whichever module owns the field; match its children by that path.
        base = tuple(self.backbone.scope.path)
        with nn.intercept_methods(_child_recorder(base, outputs)):
            self.backbone(x, train=train)
        missing = [name for name in self.layers if name not in outputs]
        if missing:
            raise ValueError(
                f"Unknown layer(s) {', '.join(map(repr, missing))} for {type(self.backbone).__name__}: expected "
                f"top-level modules it calls, e.g. from stage_layers(backbone, input_shape): {', '.join(outputs)}."
            )
        return tuple(outputs[name] for name in self.layers)
