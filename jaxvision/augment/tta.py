"""Test-time augmentation: average the softmax of a model over flipped, shifted and zoomed views.

The views of an image are affine warps (``affine.py``), so any view set is a stack of matrices and one
jitted program, whatever its size. ``views`` names a set:
  an int from the classic ladder: 1 (the image), 2 (+ left-right mirror), 10 (5 crops x 2 mirrors,
  AlexNet), 30 (5 crops x 3 scales x 2 mirrors), 150 (25 crops x 3 scales x 2 mirrors, the "up to
  150 crops" of GoogLeNet-style evaluation);
  or a spec ``"flip,crops:5,scales:3"``: ``flip`` doubles the views with mirrors; ``crops:k``
  (k in 1, 5, 9, 25) shifts the image to the centre, 4 corners, or a 3x3 / 5x5 grid of offsets up
  to ``shift:p`` pixels (default ``max(1, round(size / 16))``, 2 on 28x28 and 32x32; ``shift:4`` on
  32x32 gives the offsets of pad-4 crops); ``scales:k`` zooms by k factors evenly spaced in [0.9, 1.1]. Shifted-in pixels are 0 (the dataset mean) unless
``mode`` says otherwise.
Mirrors assume mirror-symmetric classes: leave ``flip`` out for digits and text.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.augment import affine
from jaxvision.losses import hard_labels
from jaxvision.batch import Batch, Metrics

if TYPE_CHECKING:  # only for annotations: augment/ does not import the trainer
    from jaxvision.train import TrainState

_LADDER = {1: "crops:1", 2: "flip", 10: "flip,crops:5", 30: "flip,crops:5,scales:3", 150: "flip,crops:25,scales:3"}
_CROP_GRIDS = {1: [0], 5: None, 9: [-1, 0, 1], 25: [-1, -0.5, 0, 0.5, 1]}


def _crop_offsets(count: int) -> list[tuple[float, float]]:
    if count == 5:
        return [(0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    return list(itertools.product(_CROP_GRIDS[count], repeat=2))


def _parse_views(views: int | str) -> tuple[bool, int, int, int | None]:
    """(flip, crops, scales, shift or None) of a view set; raises ValueError with the accepted forms."""
    if isinstance(views, str) and views.strip().isdigit():  # "--tta 10" from a command line
        views = int(views)
    text = _LADDER.get(views) if isinstance(views, int) else views
    if text is None:
        raise ValueError(f"Invalid views={views!r}: expected one of {', '.join(map(str, _LADDER))} or a spec like 'flip,crops:5,scales:3'.")
    flip, crops, scales, shift = False, 1, 1, None
    for item in str(text).split(","):
        name, _, value = item.strip().partition(":")
        if name == "flip" and not value:
            flip = True
        elif name == "crops" and value.isdigit() and int(value) in _CROP_GRIDS:
            crops = int(value)
        elif name == "scales" and value.isdigit() and int(value) >= 1:
            scales = int(value)
        elif name == "shift" and value.isdigit() and int(value) >= 1:
            shift = int(value)
        else:
            raise ValueError(
                f"Invalid test-time view {item.strip()!r} in views={views!r}: expected flip, crops:K (K in "
                f"{', '.join(map(str, _CROP_GRIDS))}), scales:K (K >= 1) or shift:PIXELS, e.g. 'flip,crops:5'."
            )
    return flip, crops, scales, shift


def _check_mode(mode: str) -> None:
    if mode not in affine.FILL_MODES:
        raise ValueError(f"Invalid fill mode {mode!r} for test-time views: expected one of {', '.join(affine.FILL_MODES)}.")


def count_views(views: int | str) -> int:
    """How many views a view set has, e.g. 150 for ``"flip,crops:25,scales:3"``."""
    flip, crops, scales, _ = _parse_views(views)
    return (2 if flip else 1) * crops * scales


@functools.lru_cache(maxsize=64)
def view_matrices(views: int | str, height: int, width: int) -> np.ndarray:
    """The forward affine matrices ``[num_views, 3, 3]`` of a view set on ``height x width`` images.

    The first matrix is always the identity, so ``views=1`` is plain prediction.
    """
    flip, crops, scales, shift = _parse_views(views)
    shift = shift or max(1, round(min(height, width) / 16))
    factors = [1.0] if scales == 1 else list(np.linspace(0.9, 1.1, scales))
    factors.sort(key=lambda f: abs(f - 1.0))  # identity first
    center_x, center_y = (width - 1) / 2.0, (height - 1) / 2.0
    matrices = []
    # NumPy, not affine.py's jnp builders: this also runs while an eval step is being traced.
    for mirror, factor, (dy, dx) in itertools.product((1.0, -1.0) if flip else (1.0,), factors, _crop_offsets(crops)):
        scale_x, scale_y = mirror * factor, factor
        matrices.append(
            [
                [scale_x, 0.0, center_x * (1 - scale_x) + dx * shift],
                [0.0, scale_y, center_y * (1 - scale_y) + dy * shift],
                [0.0, 0.0, 1.0],
            ]
        )
    return np.asarray(matrices, np.float32)


@functools.partial(jax.jit, static_argnames="mode")
def _tta_probabilities(state: TrainState, images: jax.Array, matrices: jax.Array, mode: str = "constant") -> jax.Array:
    def one_view(matrix):
        warped = jax.vmap(lambda image: affine.warp_affine(image, matrix, mode=mode))(images)
        return jax.nn.softmax(state.apply_fn(state.variables, warped, train=False), axis=-1)

    # One view at a time keeps memory at one batch, even for 150 views.
    return jnp.mean(jax.lax.map(one_view, matrices), axis=0)


def predict_tta(state: TrainState, images: jax.Array, *, views: int | str = 2, mode: str = "constant") -> jax.Array:
    """Class probabilities ``[batch, num_classes]`` averaged over test-time views of ``images``.

    Args:
      state: a TrainState (eval mode is used).
      images: [batch, height, width, channels], normalised like the training data.
      views: a view set (see the module docstring): 1, 2, 10, 30, 150 or e.g. "flip,crops:5".
      mode: what shifted views fill in: "constant" (0, the mean), "edge" or "reflect"; use the
        fill the model was trained with.

    Returns:
      The mean of the softmax over views; rows sum to 1.
    """
    _check_mode(mode)
    images = jnp.asarray(images, jnp.float32)
    return _tta_probabilities(state, images, jnp.asarray(view_matrices(views, images.shape[1], images.shape[2])), mode)


@functools.lru_cache(maxsize=16)
def make_tta_eval_step(views: int | str, mode: str = "constant"):
    """An eval step ``(state, batch) -> {"loss_sum", "correct", "count"}`` with test-time augmentation.

    A drop-in for ``jaxvision.train.eval_step`` in ``jaxvision.fit.evaluate(state, batches, step=...)``:
    the loss is the negative log of the averaged probability of the true class (soft labels: the
    cross-entropy against the averaged probabilities), and padding (``mask = 0``) is left out.
    """
    _parse_views(views)  # fail early, outside jit
    _check_mode(mode)

    @jax.jit
    def tta_eval_step(state: TrainState, batch: Batch) -> Metrics:
        matrices = jnp.asarray(view_matrices(views, batch.images.shape[1], batch.images.shape[2]))
        probabilities = _tta_probabilities(state, batch.images, matrices, mode)
        log_probabilities = jnp.log(jnp.maximum(probabilities, 1e-12))
        if batch.labels.ndim == 1:
            losses = -jnp.take_along_axis(log_probabilities, batch.labels[:, None], axis=-1)[:, 0]
        else:
            losses = -jnp.sum(batch.labels * log_probabilities, axis=-1)
        correct = jnp.argmax(probabilities, axis=-1) == hard_labels(batch.labels)
        return {
            "loss_sum": jnp.sum(losses * batch.mask),
            "correct": jnp.sum(correct * batch.mask),
            "count": jnp.sum(batch.mask),
        }

    return tta_eval_step


def evaluate_tta(
    state: TrainState, batches: Iterable[Batch], *, views: int | str = 2, mode: str = "constant"
) -> dict[str, float]:
    """Mean loss and accuracy with test-time augmentation over every real (mask = 1) example.

    Returns:
      {"loss", "accuracy", "count"} as Python floats, like ``jaxvision.fit.evaluate``.
    """
    from jaxvision.fit import evaluate  # fit imports the train step; keep this module light to import

    return evaluate(state, batches, step=make_tta_eval_step(views, mode))
