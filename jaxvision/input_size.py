"""The smallest input a model accepts, found by tracing the model, and the boundary check built on it.

A network of convolutions and poolings shrinks its input: LeNet-5's unpadded 5x5 convolution turns an
8x8 digit (after the first pool, 4x4) into a 0x0 map, the flattened 0 features make the next dense
layer's initialiser divide by a fan-in of 0 (a ZeroDivisionError), and VGG's adaptive average pool
averages a 0x0 map into NaNs that train silently. ``minimum_input_size`` finds, for any model, the
smallest square input for which no intermediate value of the forward pass has an empty dimension;
``check_input_size`` turns that into one line a user can act on, before anything is compiled.

Nothing is computed or compiled: every probe is ``jax.make_jaxpr`` of ``model.init`` on an abstract
input (what ``jax.eval_shape`` does), and its jaxpr is read for zero-sized values.
"""

from __future__ import annotations

import contextlib
import gc
import numbers
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from jaxvision.backends import REFERENCE_LAYERS
from jaxvision.backends import cpu as cpu_backend

# Largest side probed; a model that rejects even this is reported rather than searched further.
MAX_SIZE = 1024

_DEFAULT_FIX = "Pass --image-size {size} to resize."

# (model, channels) -> (height, width). Flax modules are frozen dataclasses, hashable by their fields.
_cache: dict[tuple[nn.Module, int], tuple[int, int]] = {}


class _Collapsed(Exception):
    """Raised inside a probe as soon as a module sees an empty array, to stop tracing early."""


def _has_empty_dimension(tree: Any) -> bool:
    return any(0 in getattr(leaf, "shape", ()) for leaf in jax.tree.leaves(tree))


def _stop_at_empty(next_fun, args, kwargs, context):
    # Most collapses reach a module (the next conv) long before the end of the network; stopping
    # there makes a failing probe of a deep network cost a few layers' tracing, not all of them.
    if _has_empty_dimension((args, kwargs)):
        raise _Collapsed(context.module.path)
    output = next_fun(*args, **kwargs)
    if _has_empty_dimension(output):
        raise _Collapsed(context.module.path)
    return output


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[jax_core.Jaxpr]:
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax_core.Jaxpr):
                yield item


def _jaxpr_has_empty_value(jaxpr: jax_core.Jaxpr) -> bool:
    """Whether any equation, also inside nested jit/custom_jvp/scan bodies, outputs an empty array.

    This catches what no module sees: a pooling function (not a module) whose 0x0 output goes into
    VGG's adaptive pool, which makes a full-sized map of NaNs out of it.
    """
    for equation in jaxpr.eqns:
        if any(0 in getattr(var.aval, "shape", ()) for var in equation.outvars):
            return True
        if any(_jaxpr_has_empty_value(sub) for sub in _sub_jaxprs(equation.params)):
            return True
    return False


def _probe(model: nn.Module, height: int, width: int, channels: int) -> Exception | None:
    """None if ``model`` traces on one ``height x width x channels`` image with no empty intermediate.

    Returns:
      None when the input fits; otherwise the exception that tracing raised (flax and XLA raise
      TypeError/ValueError for negative sizes, initialisers ZeroDivisionError for a fan-in of 0), or
      a ``_Collapsed`` when an intermediate value had a zero dimension without any error.
    """
    image = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
    failures: list[Exception] = []

    def init(x: jax.Array) -> Any:
        # The keys are made inside the trace: an eager jax.random.key would compile a program.
        keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        try:
            with nn.intercept_methods(_stop_at_empty):
                return model.init(keys, x, train=False)
        except Exception as error:  # any failure to trace at this size counts as "too small"
            # Caught inside the trace: an exception leaving make_jaxpr would have JAX filter its
            # traceback, which stats every frame's file and costs more than tracing a small network.
            failures.append(error)
            return None

    closed = jax.make_jaxpr(init)(image)
    if failures:
        return failures[0]
    if _jaxpr_has_empty_value(closed.jaxpr):
        return _Collapsed("an intermediate value outside any module")
    return None


def _with_reference_layers(model: nn.Module) -> nn.Module:
    """``model`` with jaxvision's XLA:CPU layers swapped for flax's own.

    The CPU layers have flax's parameters and output shapes by contract (``jaxvision.backends``)
    but take about twice as long to trace; swapping only fields that hold exactly a CPU layer
    leaves any other custom layer, and so the model's shapes, as they are.
    """
    swaps = {
        field: REFERENCE_LAYERS[field]
        for field, layer in cpu_backend.LAYERS.items()
        if getattr(model, field, None) is layer
    }
    return model.clone(**swaps) if swaps else model


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector (if it runs) for one search, then restores it.

    Tracing allocates many short-lived objects; the collections they trigger take about a quarter
    of a search's time. A search lasts well under a second, so what it leaves is collected soon.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _search(model: nn.Module, channels: int) -> int:
    """The smallest side s in 1..MAX_SIZE at which an s x s input fits.

    Doubles from 1 to the first size that fits, then bisects the last doubling. This assumes that
    a size that fits stays fitting when the input grows, true of every ``(W - F + 2P) / S + 1``
    layer. Starting at 1 makes the deep ResNets (whose padding keeps every map >= 1x1) one probe.
    """
    too_small, size = 0, 1
    while (error := _probe(model, size, size, channels)) is not None:
        if size == MAX_SIZE:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"{type(model).__name__} accepts no square input up to {MAX_SIZE}x{MAX_SIZE}x{channels}: at "
                f"{MAX_SIZE}x{MAX_SIZE} tracing gave {type(error).__name__}: {detail}. Check the model's "
                f"layers and the number of channels."
            )
        too_small, size = size, min(2 * size, MAX_SIZE)
    fits = size
    # A stack of 2x2/2 pools needs a power of two (VGG: 32), which is where the doubling stopped:
    # one probe just below it then settles the answer instead of a bisection's log2(size) probes.
    if fits - too_small > 1:
        if _probe(model, fits - 1, fits - 1, channels) is not None:
            return fits
        fits -= 1
    while fits - too_small > 1:
        middle = (too_small + fits) // 2
        if _probe(model, middle, middle, channels) is None:
            fits = middle
        else:
            too_small = middle
    return fits


def minimum_input_size(model: nn.Module, channels: int) -> tuple[int, int]:
    """The smallest square input (height, width) for which ``model`` keeps every map at least 1x1.

    Found from the model itself, by tracing ``model.init`` on abstract inputs of growing, then
    bisected, sizes (``jax.make_jaxpr``: no array is allocated and nothing is compiled) and looking
    for an exception or a zero-sized intermediate value anywhere in the forward pass. Memoised per
    (model, channels): a repeated call costs a dictionary look-up.

    Args:
      model: a Flax module with ``__call__(images, *, train)`` on ``[batch, height, width, channels]``.
      channels: the images' channels, e.g. 1 for MNIST, 3 for RGB.

    Returns:
      ``(height, width)``, e.g. ``(12, 12)`` for LeNet-5, ``(32, 32)`` for the VGGs, ``(1, 1)`` for an
      MLP or a ResNet (whose padded strided layers never shrink a map below 1x1).

    Raises:
      ValueError: if ``channels`` is not a positive integer, or no square input up to 1024x1024 fits.

    Example:
      >>> minimum_input_size(get_model("lenet5"), 1)
      (12, 12)
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"Invalid channels={channels!r}: expected a positive integer, e.g. 1 (grayscale) or 3 (RGB).")
    channels = int(channels)
    probed = _with_reference_layers(model)
    try:
        return _cache[(probed, channels)]
    except TypeError:  # a field that cannot be hashed (say, a list of widths): search without memoising
        hashable = False
    except KeyError:
        hashable = True
    with _garbage_collection_paused():
        side = _search(probed, channels)
    if hashable:
        _cache[(probed, channels)] = (side, side)
    return side, side


def check_input_size(
    model: nn.Module, name: str, image_shape: tuple[int, int, int], *, fix: str = _DEFAULT_FIX
) -> None:
    """Refuses images smaller than ``model`` accepts, in one line, before anything is compiled.

    Each side is compared with ``minimum_input_size``'s square: convolutions and poolings treat
    height and width independently, so an 8x100 image is as much too small for LeNet-5 as 8x8.

    Args:
      model: the Flax module that will get the images.
      name: what the user called the model, for the message, e.g. "lenet5".
      image_shape: one image's (height, width, channels).
      fix: the message's last sentence, with ``{size}`` (``H`` or ``H,W``), ``{height}``,
        ``{width}`` and ``{channels}`` filled with the smallest fitting shape; by default
        "Pass --image-size {size} to resize." (the training commands' option).

    Raises:
      ValueError: e.g. "lenet5 needs inputs of at least 12x12; got 8x8. Pass --image-size 12 to
        resize.", or for an ``image_shape`` that is not three positive integers.
    """
    # NumPy integers (a dataset's array shape) are as good as ints; bools and floats are mistakes.
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 3
        or not all(
            isinstance(size, numbers.Integral) and not isinstance(size, bool) and size >= 1 for size in image_shape
        )
    ):
        raise ValueError(
            f"Invalid image_shape={image_shape!r}: expected (height, width, channels) as positive integers, "
            f"e.g. (28, 28, 1)."
        )
    height, width, channels = (int(size) for size in image_shape)
    minimum_height, minimum_width = minimum_input_size(model, channels)
    if height >= minimum_height and width >= minimum_width:
        return
    # Only the short side needs to grow; a side that already fits keeps its size in the suggestion.
    target_height, target_width = max(height, minimum_height), max(width, minimum_width)
    size = f"{target_height}" if target_height == target_width else f"{target_height},{target_width}"
    hint = fix.format(size=size, height=target_height, width=target_width, channels=channels)
    raise ValueError(
        f"{name} needs inputs of at least {minimum_height}x{minimum_width}; got {height}x{width}. {hint}"
    )
