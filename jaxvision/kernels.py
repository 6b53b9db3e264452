"""Classical image kernels (edge, blur, sharpen, Gaussian, Sobel, emboss), 2-D correlation and convolution,
and max and average pooling, on single images or batches.

What deep learning calls a convolution (``nn.Conv``, ``torch.nn.Conv2d``) slides the kernel over the image
as it is, which signal processing calls a *cross-correlation*: ``correlate2d`` here. The textbook
convolution flips the kernel in both axes first (``convolve2d``); for a symmetric kernel (box blur,
Gaussian, edge, sharpen) the two agree, for Sobel and emboss the results differ.

Every function takes ``[height, width]`` (one grayscale image), ``[height, width, channels]`` (one image)
or ``[batch, height, width, channels]`` and returns an array of the same rank; a kernel is
``[kernel_height, kernel_width]`` and is applied to every channel on its own (a depthwise filter).

    >>> import numpy as np
    >>> from jaxvision.kernels import KERNELS, correlate2d
    >>> correlate2d(np.ones((5, 5)), KERNELS["box_blur"]).shape
    (3, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.models.conv_arithmetic import conv_output_size


def _read_only(rows: list[list[float]], scale: float = 1.0) -> np.ndarray:
    # NumPy rather than jax arrays: importing this module allocates nothing on a device, and a
    # read-only array cannot be changed by accident for every later caller.
    kernel = np.asarray(rows, np.float32) * np.float32(scale)
    kernel.flags.writeable = False
    return kernel


KERNELS: dict[str, np.ndarray] = {
    # Responds to any change around a pixel; sums to 0, so flat regions go to 0.
    "edge": _read_only([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "box_blur": _read_only([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),
    # The identity plus the negated Laplacian: flat regions unchanged, edges amplified.
    "sharpen": _read_only([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "gaussian": _read_only([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),
    # Horizontal and vertical intensity gradients, in correlate2d's (deep learning's) orientation:
    # sobel_x is positive where the image gets brighter to the right, sobel_y where it gets brighter downwards.
    "sobel_x": _read_only([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel_y": _read_only([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "emboss": _read_only([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


def _as_nhwc(image: jax.Array | np.ndarray, name: str) -> tuple[jax.Array, int]:
    """``image`` as ``[batch, height, width, channels]``, and its original rank to restore."""
    image = jnp.asarray(image)
    if image.ndim == 2:
        return image[None, :, :, None], 2
    if image.ndim == 3:
        return image[None], 3
    if image.ndim == 4:
        return image, 4
    raise ValueError(
        f"Invalid {name} of shape {image.shape}: expected [height, width], [height, width, channels] or "
        f"[batch, height, width, channels]. Reshape it, e.g. image.reshape(28, 28) for a flattened 28x28 image."
    )


def _restore_rank(output: jax.Array, rank: int) -> jax.Array:
    if rank == 2:
        return output[0, :, :, 0]
    if rank == 3:
        return output[0]
    return output


def _floating(dtype: jnp.dtype) -> jnp.dtype:
    """``dtype`` if it is a floating type, else float32 (integer pixel values are summed as floats)."""
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _as_kernel(kernel: jax.Array | np.ndarray) -> jax.Array:
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(
            f"Invalid kernel of shape {kernel.shape}: expected [kernel_height, kernel_width], e.g. "
            f"jaxvision.kernels.KERNELS['edge'] (3, 3). It is applied to each channel of the image separately."
        )
    return kernel


def _check_positive_int(label: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Invalid {label}={value!r}: expected an integer >= {minimum}, e.g. {label}={max(minimum, 1)}.")


def correlate2d(
    image: jax.Array | np.ndarray, kernel: jax.Array | np.ndarray, *, stride: int = 1, padding: int = 0
) -> jax.Array:
    """Slides ``kernel`` over ``image`` without flipping it: what deep learning calls a convolution.

    ``out[i, j] = sum_{u, v} image[i * stride + u, j * stride + v] * kernel[u, v]`` on the zero-padded
    image, per channel. Signal processing names this cross-correlation and keeps "convolution" for the
    flipped version (``convolve2d``); for symmetric kernels the two are the same.

    Args:
      image: [height, width], [height, width, channels] or [batch, height, width, channels]; integer
        pixel values (0-255) are fine.
      kernel: [kernel_height, kernel_width], applied to each channel separately, e.g. ``KERNELS["edge"]``.
      stride: step between neighbouring windows, in pixels, along both axes.
      padding: rows and columns of zeros added on every side; ``(kernel_size - 1) // 2`` keeps an
        odd-sized kernel's output the input's size at stride 1.

    Returns:
      The same rank as ``image``, with height and width ``(W - F + 2P) / S + 1``
      (``conv_arithmetic.conv_output_size``) and the same channels; in the image's dtype if it is a
      floating one, else float32 (the kernel is cast to it). Not clipped: an edge filter gives negative values and values
      above 255.

    Raises:
      ValueError: for an image or kernel of the wrong rank, a bad stride or padding, or a kernel that
        does not fit the padded image.
    """
    kernel = _as_kernel(kernel)
    _check_positive_int("stride", stride)
    _check_positive_int("padding", padding, minimum=0)
    images, rank = _as_nhwc(image, "image")
    _, height, width, channels = images.shape
    for size, kernel_size in ((height, kernel.shape[0]), (width, kernel.shape[1])):
        conv_output_size(int(size), int(kernel_size), stride=int(stride), padding=int(padding))  # raises if it does not fit
    # The image decides the dtype and the kernel follows: no implicit promotion (strict-mode safe).
    dtype = _floating(images.dtype)
    # One copy of the kernel per channel, each channel its own group: a depthwise filter, HWIO layout.
    filters = jnp.broadcast_to(kernel.astype(dtype)[:, :, None, None], (*kernel.shape, 1, channels))
    output = lax.conv_general_dilated(
        images.astype(dtype),
        filters,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        # GPUs and TPUs otherwise round float32 operands to bf16/tf32; the worked examples are exact integers.
        precision=lax.Precision.HIGHEST,
    )
    return _restore_rank(output, rank)


def convolve2d(
    image: jax.Array | np.ndarray, kernel: jax.Array | np.ndarray, *, stride: int = 1, padding: int = 0
) -> jax.Array:
    """The textbook convolution: ``correlate2d`` with the kernel flipped in both axes.

    ``out[i, j] = sum_{u, v} image[i * stride + u, j * stride + v] * kernel[F-1-u, F-1-v]``. What
    deep-learning libraries call convolution does not flip (``correlate2d``); this one does, as
    ``scipy.signal.convolve2d`` and signal-processing texts do.

    Args and Returns as ``correlate2d``'s.
    """
    kernel = _as_kernel(kernel)
    return correlate2d(image, kernel[::-1, ::-1], stride=stride, padding=padding)


def _pool(image: jax.Array | np.ndarray, size: int, stride: int | None, kind: str) -> jax.Array:
    _check_positive_int("size", size)
    stride = size if stride is None else stride
    _check_positive_int("stride", stride)
    images, rank = _as_nhwc(image, "image")
    for length in images.shape[1:3]:
        conv_output_size(int(length), int(size), stride=int(stride))  # raises if the window does not fit
    window, strides = (1, size, size, 1), (1, stride, stride, 1)
    if kind == "max":
        # The identity of max for the dtype, so integer images stay integers.
        lowest = -jnp.inf if jnp.issubdtype(images.dtype, jnp.floating) else jnp.iinfo(images.dtype).min
        output = lax.reduce_window(images, jnp.array(lowest, images.dtype), lax.max, window, strides, "VALID")
    else:
        images = images.astype(_floating(images.dtype))
        output = lax.reduce_window(images, jnp.array(0, images.dtype), lax.add, window, strides, "VALID") / (size * size)
    return _restore_rank(output, rank)


def max_pool2d(image: jax.Array | np.ndarray, size: int, *, stride: int | None = None) -> jax.Array:
    """The largest value of each ``size x size`` window, per channel, without padding.

    Args:
      image: [height, width], [height, width, channels] or [batch, height, width, channels].
      size: window height and width.
      stride: step between windows; None (the default) means ``size``, non-overlapping windows.

    Returns:
      The same rank and dtype as ``image``, with height and width ``(W - size) / stride + 1``; rows and
      columns that do not fill a last window are dropped.

    Raises:
      ValueError: for a bad size or stride, an image of the wrong rank, or a window larger than it.
    """
    return _pool(image, size, stride, "max")


def avg_pool2d(image: jax.Array | np.ndarray, size: int, *, stride: int | None = None) -> jax.Array:
    """The mean of each ``size x size`` window, per channel, without padding.

    Args and Returns as ``max_pool2d``'s, except that integer images give float32 means.
    """
    return _pool(image, size, stride, "avg")
