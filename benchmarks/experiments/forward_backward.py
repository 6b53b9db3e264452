"""Where each framework's train step spends its time: the forward pass against the rest, jaxvision and PyTorch.

    python -m benchmarks.experiments.forward_backward              # every CPU model at batch 128
    python -m benchmarks.experiments.forward_backward --rows resnet20:128,mnist_cnn:128 --rounds 8

Per model, in one process, three programs per framework on the same inputs as ``benchmarks.run``:
- ``eval``: the forward pass in inference mode, with the loss (jaxvision's eval step; PyTorch's
  ``model.eval()`` under ``no_grad``);
- ``forward``: the forward pass in training mode, with the loss: batch statistics and dropout on, no
  gradient (jaxvision's ``loss_and_updates``; PyTorch's ``model.train()`` under ``no_grad``);
- ``step``: the whole train step, SGD with momentum, as ``benchmarks.run`` times it.
``step - forward`` is then the backward pass and the update (plus whatever the step computes in its
forward part for the backward, such as XLA's layout transposes). The six run round-robin, each for
``--seconds`` per round, so the machine's drift hits them alike; the figures are medians over all
rounds, and ratio = PyTorch's time / jaxvision's (above 1: jaxvision is faster), as in the main table.
The jaxvision programs compile with the network's own options (``jaxvision.backends.compile``).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

# Imports of jax, torch and jaxvision wait until main() has set XLA_FLAGS as benchmarks.run does.
DEFAULT_ROWS = "mlp:128,lenet5:128,simple_cnn:128,mnist_cnn:128,resnet20:128,vgg11_cifar:128"
PROGRAMS = ("eval", "forward", "step")


def jax_programs(model: str, batch_size: int, *, kernels: str = "auto") -> dict[str, Callable[[], Any]]:
    """jaxvision's eval step, training-mode forward and train step of one row, compiled, as thunks."""
    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from jaxvision.backends.compile import compile_step
    from jaxvision.train import make_eval_step, make_train_step, split_step_key

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32", kernels=kernels, images="auto")
    train_step, eval_step = make_train_step(), make_eval_step()
    forward = compile_step(_training_forward, state)
    dropout_key = split_step_key(key, state.step)[1]
    carry = [state]

    def step() -> Any:
        carry[0], metrics = train_step(carry[0], batch, key)
        return metrics

    return {
        "eval": lambda: eval_step(carry[0], batch),
        "forward": lambda: forward(carry[0], batch, dropout_key),
        "step": step,
    }


def _training_forward(state: Any, batch: Any, dropout_key: Any) -> Any:
    """The train step's forward pass and loss, without the gradient (module level: jitted once per options)."""
    from jaxvision.losses import cross_entropy
    from jaxvision.train import loss_and_updates

    loss, (_, batch_stats) = loss_and_updates(state, state.params, batch, dropout_key, loss=cross_entropy)
    return loss, batch_stats


def torch_programs(model: str, batch_size: int) -> dict[str, Callable[[], Any]]:
    """The PyTorch twin's eval forward, training-mode forward and train step, eager, as thunks."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from benchmarks.inputs import benchmark_inputs
    from benchmarks.jax_bench import LEARNING_RATE, MODELS_BY_NAME, MOMENTUM
    from benchmarks.torch_models import build_torch_model

    spec = MODELS_BY_NAME[model]
    torch.manual_seed(0)
    network = build_torch_model(model, spec.num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    pixels, labels, _ = benchmark_inputs(spec.input_shape, spec.num_classes, batch_size, "auto")
    images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    targets = torch.from_numpy(labels.astype(np.int64))

    def forward(train: bool) -> Callable[[], Any]:
        def run() -> Any:
            network.train(train)
            with torch.no_grad():
                return F.cross_entropy(network(images), targets)
        return run

    def step() -> None:
        network.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(images), targets).backward()
        optimizer.step()

    return {"eval": forward(False), "forward": forward(True), "step": step}


def compare(model: str, batch_size: int, *, rounds: int, seconds: float, with_torch: bool = True,
            kernels: str = "auto") -> dict[str, dict[str, float]]:
    """Median seconds of each program, ``{framework: {program: seconds}}``, plus ``backward`` = step - forward.

    The programs run round-robin: every program of both frameworks once per round, one untimed call
    and then at least ``seconds`` and at least 2 timed calls each, after two warm-up calls each.
    """
    import jax

    from benchmarks.timing import timed_calls

    thunks = {"jaxvision": jax_programs(model, batch_size, kernels=kernels)}
    if with_torch:
        thunks["pytorch"] = torch_programs(model, batch_size)
    sync = {"jaxvision": jax.block_until_ready, "pytorch": lambda result: result}
    samples: dict[str, dict[str, list[float]]] = {f: {p: [] for p in PROGRAMS} for f in thunks}
    for framework, programs in thunks.items():
        for program in programs.values():
            for _ in range(2):
                sync[framework](program())
    for _ in range(rounds):
        for framework, programs in thunks.items():
            for name, program in programs.items():
                call = (lambda p=program, s=sync[framework]: s(p()))
                call()  # untimed: the first call after the other programs runs on cold caches and pages
                samples[framework][name] += timed_calls(call, repeats=2, min_seconds=seconds)
    medians = {f: {p: statistics.median(s) for p, s in by_program.items()} for f, by_program in samples.items()}
    for figures in medians.values():
        figures["backward"] = figures["step"] - figures["forward"]
    return medians


def table(rows: list[tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    """Markdown: per row and program, jaxvision ms, PyTorch ms and the ratio PyTorch / jaxvision."""
    columns = (*PROGRAMS[:2], "backward", "step")
    head = "| model | batch | " + " | ".join(f"{c} jax ms | {c} torch ms | ratio" for c in columns) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(columns))]
    for model, batch_size, medians in rows:
        cells = []
        for column in columns:
            ours = medians["jaxvision"][column] * 1e3
            theirs = medians.get("pytorch", {}).get(column)
            cells += [f"{ours:.1f}", "-" if theirs is None else f"{theirs * 1e3:.1f}",
                      "-" if theirs is None else f"{theirs * 1e3 / ours:.2f}x"]
        lines.append(f"| {model} | {batch_size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.forward_backward",
                                description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto",
                   help="which layers build the jaxvision networks (default auto: the CPU kernels on CPU)")
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    p.add_argument("--seconds", type=float, default=0.5, help="time per program per round (default 0.5)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds < 0:
        p.error(f"Invalid --rounds {args.rounds} / --seconds {args.seconds}: expected >= 1 and >= 0, e.g. 5 and 0.5.")
    from benchmarks.run import side_by_side_environment

    with_torch = side_by_side_environment(argv)
    from benchmarks.experiments import parse_rows

    rows = []
    for model, batch_size in parse_rows(args.rows):
        rows.append((model, batch_size, compare(model, batch_size, rounds=args.rounds, seconds=args.seconds,
                                                with_torch=with_torch, kernels=args.kernels)))
        print(f"{model} batch {batch_size} done", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
