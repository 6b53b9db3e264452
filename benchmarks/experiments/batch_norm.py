"""Batch norm's per-channel sums on this backend: XLA's reductions against the CPU kernels' ``BatchNorm``.

Two measurements, each jitted, warmed up, synced with ``block_until_ready``, median (min-max):
  channel sums:  ``jnp.sum`` over batch x height x width against ``jaxvision.backends.cpu.batch_norm.
                 channel_sum`` (a GEMV) for ResNet-20's three activation shapes;
  train step:    a ResNet train step (SGD momentum, normal noise) built with the CPU kernels but
                 ``norm=flax.linen.BatchNorm``, against the same network with the CPU kernels' own
                 ``BatchNorm``; same parameters, alternating rounds in one process, so that both see
                 the same machine.

  python -m benchmarks.experiments.batch_norm
  python -m benchmarks.experiments.batch_norm --model resnet18 --batch-size 8 --rounds 2
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import Timing, time_function
from jaxvision.backends.cpu import batch_norm
from jaxvision.backends.cpu.xla_flags import use_fast_cpu_training_flags
from jaxvision.batch import Batch
from jaxvision.models import get_model
from jaxvision.optimizers import make_optimizer
from jaxvision.train import create_train_state, train_step

SHAPES = ((128, 32, 32, 16), (128, 16, 16, 32), (128, 8, 8, 64))


def _ms(timing: Timing) -> str:
    return f"{timing.median * 1e3:7.2f} ms ({timing.min * 1e3:.2f}-{timing.max * 1e3:.2f})"


def channel_sums(repeats: int) -> None:
    reduce_sum = jax.jit(lambda x: jnp.sum(x, axis=(0, 1, 2)))
    gemv_sum = jax.jit(batch_norm.channel_sum)
    for shape in SHAPES:
        x = jax.random.normal(jax.random.key(0), shape)
        np.testing.assert_allclose(gemv_sum(x), reduce_sum(x), rtol=1e-4, atol=1e-2)
        print(f"channel sum {str(shape):<20} jnp.sum {_ms(time_function(lambda: reduce_sum(x), repeats=repeats))}"
              f"   channel_sum {_ms(time_function(lambda: gemv_sum(x), repeats=repeats))}")


def train_steps(model_name: str, batch_size: int, rounds: int, repeats: int) -> None:
    shape = (224, 224, 3) if model_name in ("resnet18", "resnet34", "resnet50") else (32, 32, 3)
    optimizer = make_optimizer("momentum", 0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = jax.device_put(Batch.of(rng.normal(size=(batch_size, *shape)).astype(np.float32),
                                    rng.integers(0, 10, batch_size)))
    key = jax.random.key(1)
    steps = {}
    for name, overrides in (("jaxvision", {}), ("flax", {"norm": nn.BatchNorm})):
        model = get_model(model_name, kernels="cpu", **overrides)
        # Same key, same parameters: BatchNorm's parameters and statistics are flax's in either.
        state = create_train_state(model, shape, optimizer, jax.random.key(0))
        steps[name] = (jax.jit(train_step.unjitted).lower(state, batch, key).compile(), state)
    (jaxvision_step, state), (flax_step, flax_state) = steps["jaxvision"], steps["flax"]
    if flax_step.as_text() == jaxvision_step.as_text():
        raise RuntimeError("flax's and jaxvision's BatchNorm compiled to the same program: the norm override did not apply.")
    for round_index in range(rounds):
        flax_time = time_function(lambda: flax_step(flax_state, batch, key), repeats=repeats)
        ours_time = time_function(lambda: jaxvision_step(state, batch, key), repeats=repeats)
        print(f"{model_name} batch {batch_size} round {round_index + 1}: flax BatchNorm {_ms(flax_time)}"
              f"   jaxvision BatchNorm {_ms(ours_time)}   speed-up {flax_time.median / ours_time.median:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.batch_norm", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", help="a ResNet: resnet20/32/44/56/110 or resnet18/34/50")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternating flax / jaxvision rounds")
    parser.add_argument("--repeats", type=int, default=10, help="timed train steps per round")
    args = parser.parse_args(argv)
    use_fast_cpu_training_flags()  # YNN fusions off on CPU, as in benchmarks.run (before JAX starts)
    if not args.model.startswith("resnet"):
        parser.error(f"--model {args.model!r} has no batch norm here: pass a ResNet, e.g. resnet20.")
    print(f"backend {jax.default_backend()}, device {jax.devices()[0].device_kind}")
    channel_sums(repeats=40)
    train_steps(args.model, args.batch_size, args.rounds, args.repeats)


if __name__ == "__main__":
    main()
