"""Each convolution of a network, forward, input gradient and kernel gradient: XLA against PyTorch.

    python -m benchmarks.experiments.conv_passes           # ResNet-20 at batch 128
    python -m benchmarks.experiments.conv_passes --model vgg11_cifar --batch-size 32

The convolutions are read off the network's forward pass (its jaxpr, in training mode) and each
distinct shape is timed alone, in one process, round-robin between the two frameworks, with an
untimed call before each timed block:
- jaxvision: ``lax.conv_general_dilated`` jitted, and ``jax.vjp`` of it with respect to the input
  (``dgrad``) and to the kernel (``wgrad``) in separate programs. XLA's kernel gradient includes the
  layout transposes it puts in front of its kernel-gradient convolution, as in a train step.
- PyTorch: ``F.conv2d`` and ``aten.convolution_backward`` with only the input or only the weight
  gradient asked for, NCHW (the twins' layout).
Totals weight each shape by how often the network has it. Only the layers that the network runs as
XLA convolutions are listed; with the CPU kernels (``--kernels cpu``, the default on CPU) those that
take another path are left out: the few-channel layers of ``jaxvision.backends.cpu.conv`` (a stencil
or col2im, e.g. ResNet-20's 3-channel stem and both of LeNet-5's) and the convolutions over 2x2 maps
(one matmul, VGG's last stage). With ``--kernels reference`` every layer is XLA's convolution.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

# Imports of jax, torch and jaxvision wait until main() has set XLA_FLAGS as benchmarks.run does.
PASSES = ("forward", "dgrad", "wgrad")


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """One 2-D NHWC/HWIO convolution: input ``[batch, height, width, in]``, kernel ``[kh, kw, in, out]``."""

    input_shape: tuple[int, int, int, int]
    kernel_shape: tuple[int, int, int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]

    def __str__(self) -> str:
        _, height, width, channels = self.input_shape
        kh, kw, _, out = self.kernel_shape
        stride = "" if self.strides == (1, 1) else f" /{self.strides[0]}"
        return f"{kh}x{kw} {height}x{width}x{channels}->{out}{stride}"


def network_convolutions(model: str, batch_size: int, *, kernels: str = "auto") -> collections.Counter[ConvShape]:
    """The plain NHWC convolutions in ``model``'s training-mode forward pass, with their counts.

    Raises:
      ValueError: for a convolution this script cannot time (dilated, grouped or not NHWC/HWIO).
    """
    import jax

    from benchmarks.jax_bench import MODELS_BY_NAME, build

    spec = MODELS_BY_NAME[model]
    _, state, batch, key = build(spec, batch_size, "float32", kernels=kernels)
    variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
    jaxpr = jax.make_jaxpr(lambda v, x: state.apply_fn(v, x, train=True, rngs={"dropout": key},
                                                       mutable=["batch_stats"]))(variables, batch.images)
    found: collections.Counter[ConvShape] = collections.Counter()
    for equation in _equations(jaxpr.jaxpr):
        if equation.primitive.name != "conv_general_dilated":
            continue
        params = equation.params
        lhs, rhs = (v.aval.shape for v in equation.invars)
        numbers = params["dimension_numbers"]
        plain = (numbers.lhs_spec == (0, 3, 1, 2) and numbers.rhs_spec == (3, 2, 0, 1) and len(lhs) == 4
                 and params["feature_group_count"] == 1 and params["batch_group_count"] == 1
                 and tuple(params["lhs_dilation"]) == (1, 1) and tuple(params["rhs_dilation"]) == (1, 1))
        if not plain:
            raise ValueError(f"{model} has a convolution this script does not time ({params}): expected 2-D NHWC/HWIO, "
                             "undilated and ungrouped.")
        found[ConvShape(tuple(lhs), tuple(rhs), tuple(params["window_strides"]),
                        tuple(tuple(p) for p in params["padding"]))] += 1
    return found


def _equations(jaxpr: Any):
    """Every equation of ``jaxpr`` and of the jaxprs nested in it, but not inside functions with custom
    derivatives (the CPU kernels' few-channel convolutions: their gradients are not XLA's convolutions)."""
    for equation in jaxpr.eqns:
        yield equation
        if equation.primitive.name.startswith(("custom_jvp", "custom_vjp")):
            continue
        for value in equation.params.values():
            for inner in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def conv_arrays(shape: ConvShape) -> tuple[Any, Any, Any]:
    """NumPy float32 input ``[n, h, w, in]``, kernel ``[kh, kw, in, out]`` and output gradient
    ``[n, out_h, out_w, out]`` for ``shape``: both frameworks time the very same numbers."""
    import numpy as np

    rng = np.random.default_rng(0)
    (top, bottom), (left, right) = shape.padding
    _, height, width, _ = shape.input_shape
    kh, kw, _, out = shape.kernel_shape
    out_h = (height + top + bottom - kh) // shape.strides[0] + 1
    out_w = (width + left + right - kw) // shape.strides[1] + 1
    return (rng.normal(size=shape.input_shape).astype(np.float32),
            (rng.normal(size=shape.kernel_shape) * 0.1).astype(np.float32),
            rng.normal(size=(shape.input_shape[0], out_h, out_w, out)).astype(np.float32))


def jax_passes(shape: ConvShape) -> dict[str, Callable[[], Any]]:
    """XLA's forward, input-gradient and kernel-gradient programs for ``shape``, compiled, as thunks
    returning their results (NHWC, HWIO)."""
    import jax
    from jax import lax

    x, kernel, dy = (jax.device_put(a) for a in conv_arrays(shape))

    def conv(images, weights):
        return lax.conv_general_dilated(images, weights, shape.strides, shape.padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    forward = jax.jit(conv)
    dgrad = jax.jit(lambda images, weights, g: jax.vjp(lambda i: conv(i, weights), images)[1](g)[0])
    wgrad = jax.jit(lambda images, weights, g: jax.vjp(lambda w: conv(images, w), weights)[1](g)[0])
    return {
        "forward": lambda: jax.block_until_ready(forward(x, kernel)),
        "dgrad": lambda: jax.block_until_ready(dgrad(x, kernel, dy)),
        "wgrad": lambda: jax.block_until_ready(wgrad(x, kernel, dy)),
    }


def torch_passes(shape: ConvShape) -> dict[str, Callable[[], Any]]:
    """PyTorch's forward, input-gradient and weight-gradient calls for ``shape``, as thunks returning
    their results (NCHW, OIHW: the twins' layouts)."""
    import torch
    import torch.nn.functional as F

    (top, bottom), (left, right) = shape.padding
    if top != bottom or left != right:
        raise ValueError(f"PyTorch's conv2d pads symmetrically; {shape} has padding {shape.padding}.")
    x, kernel, dy = conv_arrays(shape)
    x, dy = (torch.from_numpy(a).permute(0, 3, 1, 2).contiguous() for a in (x, dy))
    kernel = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    stride, padding = list(shape.strides), [top, left]

    def backward(mask: list[bool], index: int) -> Callable[[], Any]:
        return lambda: torch.ops.aten.convolution_backward(dy, x, kernel, None, stride, padding, [1, 1], False,
                                                           [0, 0], 1, mask)[index]

    return {
        "forward": lambda: F.conv2d(x, kernel, stride=stride, padding=padding),
        "dgrad": backward([True, False, False], 0),
        "wgrad": backward([False, True, False], 1),
    }


def compare(shape: ConvShape, *, rounds: int, seconds: float, with_torch: bool = True) -> dict[str, dict[str, float]]:
    """Median seconds, ``{framework: {pass: seconds}}``: the passes round-robin, as in the module docstring."""
    from benchmarks.timing import timed_calls

    thunks = {"jaxvision": jax_passes(shape)}
    if with_torch:
        thunks["pytorch"] = torch_passes(shape)
    samples: dict[str, dict[str, list[float]]] = {f: {p: [] for p in PASSES} for f in thunks}
    for _ in range(rounds):
        for framework, passes in thunks.items():
            for name, call in passes.items():
                call()  # untimed: the first call after the other framework's runs on cold caches
                samples[framework][name] += timed_calls(call, repeats=3, min_seconds=seconds)
    return {f: {p: statistics.median(s) for p, s in by_pass.items()} for f, by_pass in samples.items()}


def table(rows: list[tuple[ConvShape, int, dict[str, dict[str, float]]]]) -> str:
    """Markdown: per shape (and the count-weighted total) each pass in both frameworks, ms, and the ratio."""
    frameworks = list(rows[0][2]) if rows else ["jaxvision"]
    head = "| convolution | count | " + " | ".join(
        f"{p} jax ms" + (f" | {p} torch ms | ratio" if "pytorch" in frameworks else "") for p in PASSES) + " |"
    width = 2 + len(PASSES) * (3 if "pytorch" in frameworks else 1)
    lines = [head, "|" + "---|" * width]
    totals = {f: dict.fromkeys(PASSES, 0.0) for f in frameworks}

    def cells(figures: dict[str, dict[str, float]]) -> str:
        out = []
        for p in PASSES:
            ours = figures["jaxvision"][p] * 1e3
            out.append(f"{ours:.2f}")
            if "pytorch" in figures:
                theirs = figures["pytorch"][p] * 1e3
                out += [f"{theirs:.2f}", f"{theirs / ours:.2f}x"]
        return " | ".join(out)

    for shape, count, figures in rows:
        lines.append(f"| {shape} | {count} | {cells(figures)} |")
        for framework in frameworks:
            for p in PASSES:
                totals[framework][p] += count * figures[framework][p]
    lines.append(f"| **network** | {sum(count for _, count, _ in rows)} | {cells(totals)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.conv_passes", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20", help="a benchmarks.run model (default resnet20)")
    p.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto",
                   help="which layers build the network (default auto: the CPU kernels on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    p.add_argument("--seconds", type=float, default=0.3, help="time per pass per round (default 0.3)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds < 0 or args.batch_size < 1:
        p.error(f"Invalid --rounds {args.rounds} / --seconds {args.seconds} / --batch-size {args.batch_size}: "
                "expected >= 1, >= 0 and >= 1, e.g. 5, 0.3 and 128.")
    from benchmarks.run import side_by_side_environment

    with_torch = side_by_side_environment(argv)
    from benchmarks.jax_bench import available_models

    available_models([args.model], "cpu")  # a clear error for an unknown name
    convolutions = network_convolutions(args.model, args.batch_size, kernels=args.kernels)
    if not convolutions:
        print(f"{args.model} has no convolutions that XLA runs as convolutions (few-channel layers are left out).")
        return
    rows = []
    for shape, count in convolutions.items():
        rows.append((shape, count, compare(shape, rounds=args.rounds, seconds=args.seconds, with_torch=with_torch)))
        print(f"{shape} x{count} done", flush=True)
    print(f"{args.model}, batch {args.batch_size}, medians of {args.rounds} round-robin rounds:")
    print(table(rows))


if __name__ == "__main__":
    main()
