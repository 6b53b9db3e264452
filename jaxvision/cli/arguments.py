"""argparse value types that reject bad input with a message saying how to fix it."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer, e.g. 128") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: expected a positive integer, e.g. 128")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive number, e.g. 1e-3") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a finite positive number, e.g. 1e-3")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number >= 0, e.g. 1e-4") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a finite number >= 0, e.g. 1e-4")
    return value


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in (0, 1), e.g. 0.1") from None
    if not 0 < value < 1:  # also false for NaN
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in (0, 1), e.g. 0.1")
    return value


def dropout_rate(text: str) -> float:
    """A number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1), e.g. 0.5") from None
    if not 0 <= value < 1:  # also false for NaN
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1), e.g. 0.5")
    return value


def shape(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``224,224,3``."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: expected comma-separated integers, e.g. 224,224,3") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: expected positive integers, e.g. 224,224,3")
    return values


# Seeds feed jax.random.key (int64) and tf.data's shuffle seed (seed * 1_000_003 + epoch, int64).
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """An integer in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an integer in [0, {MAX_SEED}], e.g. 0") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: expected an integer in [0, {MAX_SEED}], e.g. 0")
    return value


def spec(text: str) -> str:
    """A non-empty comma-separated spec such as ``flip,crop:4``: no empty items."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(
            f"invalid spec {text!r}: expected comma-separated items without empty ones, e.g. flip,crop:4"
        )
    return text


def image_size(text: str) -> tuple[int, int]:
    """``H`` (a square) or ``H,W``: positive integers."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid image size {text!r}: expected H or H,W, e.g. 32 or 224,224") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid image size {text!r}: expected H or H,W, e.g. 32 or 224,224")
    return (values[0], values[0]) if len(values) == 1 else values


def unit_fraction(text: str) -> float:
    """A number in [0, 1), e.g. a label-smoothing amount."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1), e.g. 0.1") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1), e.g. 0.1")
    return value


def decay(text: str) -> float:
    """A number in (0, 1), e.g. an EMA decay."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid decay {text!r}: expected a number in (0, 1), e.g. 0.999") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid decay {text!r}: expected a number in (0, 1), e.g. 0.999")
    return value


def finetune(text: str) -> str:
    """all, linear or last:K (K >= 1)."""
    mode, _, count = text.partition(":")
    if text in ("all", "linear") or (mode == "last" and count.isdigit() and int(count) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"invalid finetune {text!r}: expected all, linear or last:K with K >= 1, e.g. last:2")
