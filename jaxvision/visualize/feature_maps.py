"""What each convolution of a network outputs for one image, found in the model by tracing it.

A layer is found by what it holds, not by its class: a module whose own ``kernel`` parameter has
rank 4 is a convolution (flax's ``nn.Conv``, the CPU backend's ``Conv``, any look-alike), rank 2 a
dense layer. Layers are named by their module path joined with "/" (``stage1_block1/conv1``) and
listed in call order: the order the capture filter is asked in, as each call returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.visualize.grids import min_max_scale, pyplot, save_figure, tile


def kernel_rank(module: Any) -> int | None:
    """The rank of ``module``'s own ``kernel`` parameter, or None if it has none."""
    kernel = module.variables.get("params", {}).get("kernel")
    return None if kernel is None else len(kernel.shape)


def layer_name(path: Sequence[str]) -> str:
    """A module path as a layer name: ``("stage1_block1", "conv1")`` -> ``"stage1_block1/conv1"``."""
    return "/".join(path)


def weighted_layers(model: Any, variables: dict[str, Any], input_shape: Sequence[int]) -> list[tuple[str, int]]:
    """``(name, kernel rank)`` of every call of a module with a ``kernel`` parameter, in call order.

    Traced abstractly (``jax.eval_shape``): nothing is computed or compiled.

    Args:
      model: a flax module.
      variables: its variables.
      input_shape: one example's ``[H, W, C]``.
    """
    found: list[tuple[str, int]] = []

    def record(module: Any, method_name: str) -> bool:
        rank = kernel_rank(module) if method_name == "__call__" else None
        if rank is not None:
            found.append((layer_name(module.path), rank))
        return False  # only the order is wanted here, not the values

    inputs = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    jax.eval_shape(lambda x: model.apply(variables, x, train=False, capture_intermediates=record,
                                         mutable=["intermediates"]), inputs)
    return found


def conv_layer_names(model: Any, variables: dict[str, Any], input_shape: Sequence[int]) -> list[str]:
    """The names of ``model``'s convolutions in call order (each once), e.g. ``["Conv_0", "Conv_1"]``."""
    names = [name for name, rank in weighted_layers(model, variables, input_shape) if rank == 4]
    return list(dict.fromkeys(names))


def check_layers(layers: Sequence[str], known: Sequence[str]) -> None:
    """Raises a one-line ValueError naming the layers of ``layers`` not in ``known`` and listing ``known``."""
    if not known:
        raise ValueError("The model has no convolution layers: feature maps and Grad-CAM need a CNN "
                         "(for an MLP or a linear model, look at its filters instead)")
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(f"Unknown layer {', '.join(map(repr, unknown))}: expected convolution names of this model, "
                         f"one of {', '.join(known)}; pass e.g. {known[0]}")


def one_image(image: Any) -> jax.Array:
    """``image`` as a float32 ``[H, W, C]`` array; rejects a batch or a bare ``[H, W]``."""
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 3:
        raise ValueError(f"Invalid image of shape {tuple(image.shape)}: expected one [height, width, channels] image "
                         "as the model takes it (e.g. Run.preprocess(images)[0])")
    return image


def capture_outputs(model: Any, variables: dict[str, Any], images: jax.Array,
                    names: Sequence[str]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits of ``images`` and the output of each named layer's first call (captured, not recomputed)."""
    wanted = {tuple(name.split("/")) for name in names}

    def keep(module: Any, method_name: str) -> bool:
        return method_name == "__call__" and tuple(module.path) in wanted

    logits, state = model.apply(variables, images, train=False, capture_intermediates=keep, mutable=["intermediates"])
    outputs = {}
    for name in names:
        node = state["intermediates"]
        for part in name.split("/"):
            node = node[part]
        outputs[name] = node["__call__"][0]
    return logits, outputs


def feature_maps(model: Any, variables: dict[str, Any], image: Any, *,
                 layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The output of every convolution of ``model`` for one image.

    These are the convolutions' own outputs, before anything after them: before the activation
    (a separate function, which module tracing cannot see), before batch norm and before pooling.

    Args:
      model: a flax module.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      image: ``[H, W, C]`` float32 as the model takes it (normalised: ``Run.preprocess(images)[0]``).
      layers: the convolutions to return (names from ``conv_layer_names``); None for all.

    Returns:
      Layer name -> ``[h, w, channels]`` float32, in call order.

    Raises:
      ValueError: an image that is not ``[H, W, C]``, a model without convolutions, or an unknown
        layer name (the message lists the valid ones).
    """
    image = one_image(image)
    known = conv_layer_names(model, variables, image.shape)
    check_layers(list(layers) if layers is not None else [], known)
    names = [name for name in known if layers is None or name in layers]
    _, outputs = capture_outputs(model, variables, image[None], names)
    return {name: np.asarray(outputs[name][0], np.float32) for name in names}


def plot_feature_maps(maps: dict[str, np.ndarray], path: str, *, max_channels: int = 32,
                      title: str | None = None) -> None:
    """Saves the maps of ``feature_maps`` as a PNG: one section per layer, its channels tiled in it.

    Args:
      maps: layer name -> ``[h, w, channels]``.
      path: the PNG to write.
      max_channels: channels shown per layer (the first ones); the section's title says how many there are.
      title: the figure's title.
    """
    if not maps:
        raise ValueError("Invalid maps: expected at least one layer's feature maps, got none")
    plt = pyplot()
    sections = []
    for name, values in maps.items():
        channels = np.moveaxis(np.asarray(values, np.float32), -1, 0)  # [channels, h, w]
        shown = channels[:max_channels]
        columns = min(len(shown), 16)
        # NaN between tiles: imshow leaves it blank, so no colour of the map doubles as a border.
        sections.append((name, values.shape, len(channels), tile(min_max_scale(shown), columns=columns, fill=np.nan)))
    width = 12.0
    heights = [width * grid.shape[0] / grid.shape[1] for *_, grid in sections]
    figure, axes = plt.subplots(len(sections), 1, figsize=(width, sum(heights) + 0.6 * len(sections) + 0.6),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, (name, shape, count, grid) in zip(axes[:, 0], sections):
        axis.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        shown = f", first {max_channels} of {count} channels" if count > max_channels else ""
        axis.set_title(f"{name}: {shape[0]}x{shape[1]}x{shape[2]}{shown}", fontsize=10)
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)

