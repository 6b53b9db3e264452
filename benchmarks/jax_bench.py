"""The jaxvision side: which models, on what inputs, and the timing of their train and eval steps."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.inputs import benchmark_inputs, resolve_source
from benchmarks.timing import PageFaults, peak_memory_bytes, time_compile, time_function
from jaxvision.backends import resolve_kernels
from jaxvision.backends.compile import compile_step, step_compiler_options
from jaxvision.batch import Batch
from jaxvision.models import get_model, list_models
from jaxvision.optimizers import make_optimizer
from jaxvision.train import create_train_state, make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A benchmarked model: its registry name, one input's shape, classes, and whether CPU runs it by default."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    on_cpu_by_default: bool = True


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("mlp", (28, 28, 1), 10),
    ModelSpec("lenet5", (28, 28, 1), 10),
    ModelSpec("simple_cnn", (28, 28, 1), 10),
    ModelSpec("mnist_cnn", (28, 28, 1), 10),
    ModelSpec("resnet20", (32, 32, 3), 10),
    ModelSpec("vgg11_cifar", (32, 32, 3), 10),
    # ImageNet-sized: minutes per step on a 2-core CPU, so only with --models on CPU.
    ModelSpec("resnet18", (224, 224, 3), 1000, on_cpu_by_default=False),
    ModelSpec("resnet50", (224, 224, 3), 1000, on_cpu_by_default=False),
)
MODELS_BY_NAME = {spec.name: spec for spec in MODELS}
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def available_models(names: list[str] | None, backend: str) -> list[ModelSpec]:
    """The specs to run: ``names`` (validated against the registry), else the backend's default set.

    Raises:
      ValueError: for a name without a spec here or not in ``jaxvision.models.list_models()``.
    """
    registered = set(list_models())
    if names is None:
        return [s for s in MODELS if s.name in registered and (backend != "cpu" or s.on_cpu_by_default)]
    unknown = [n for n in names if n not in MODELS_BY_NAME or n not in registered]
    if unknown:
        runnable = [s.name for s in MODELS if s.name in registered]
        raise ValueError(f"Unknown benchmark model(s) {', '.join(unknown)}: expected some of {', '.join(runnable)}.")
    return [MODELS_BY_NAME[n] for n in names]


def build(spec: ModelSpec, batch_size: int, dtype: str, *, kernels: str = "auto", seed: int = 0,
          images: str = "synthetic"):
    """(model, train state with SGD momentum, an on-device Batch, key) for one benchmark row.

    ``kernels`` is passed to ``jaxvision.get_model`` ("auto", "reference" or "cpu");
    ``images`` is "auto", "mnist" or "synthetic" (``benchmarks.inputs``).
    """
    overrides = {} if dtype == "float32" else {"dtype": jnp.dtype(dtype)}
    model = get_model(spec.name, num_classes=spec.num_classes, kernels=kernels, **overrides)
    state = create_train_state(model, spec.input_shape, make_optimizer("momentum", LEARNING_RATE, momentum=MOMENTUM),
                               jax.random.key(seed))
    pixels, labels, _ = benchmark_inputs(spec.input_shape, spec.num_classes, batch_size, images, seed=seed)
    batch = jax.device_put(Batch.of(pixels, labels))
    return model, state, batch, jax.random.key(seed + 1)


def parameter_count(state) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params)))


def bench_jax(spec: ModelSpec, batch_size: int, dtype: str, *, repeats: int, warmup: int = 2,
              kernels: str = "auto", images: str = "synthetic", min_seconds: float = 0.0) -> dict[str, Any]:
    """Compile times, train and inference step timings and XLA FLOPs of one (model, batch, dtype), built
    with ``kernels`` ("auto", "reference" or "cpu", see ``jaxvision.backends``), on ``images`` ("auto",
    "mnist" or "synthetic", see ``benchmarks.inputs``)."""
    images = resolve_source(images, spec.input_shape)
    _, state, batch, key = build(spec, batch_size, dtype, kernels=kernels, images=images)
    # The steps as jaxvision.fit compiles them: the one jit, with the options the backend picks for
    # this network (jaxvision.backends.compile).
    train_jit = compile_step(make_train_step().unjitted, state)
    eval_jit = compile_step(make_eval_step().unjitted, state)
    train, train_compile_s, train_flops = time_compile(train_jit, state, batch, key)
    evaluate, eval_compile_s, eval_flops = time_compile(eval_jit, state, batch)
    carry = [state]

    def one_train_step():
        carry[0], metrics = train(carry[0], batch, key)
        return metrics

    with PageFaults() as faults:
        train_timing = time_function(one_train_step, repeats=repeats, warmup=warmup, min_seconds=min_seconds)
    eval_timing = time_function(lambda: evaluate(carry[0], batch), repeats=repeats, warmup=warmup,
                                min_seconds=min_seconds)
    return {
        "framework": "jaxvision", "mode": "jit", "model": spec.name, "kernels": resolve_kernels(kernels),
        "batch_size": batch_size, "dtype": dtype, "images": images, "parameters": parameter_count(state),
        "compiler_options": step_compiler_options(state),
        "train_compile_s": train_compile_s, "eval_compile_s": eval_compile_s,
        "train_step_s": dataclasses.asdict(train_timing),
        "train_images_per_s": batch_size / train_timing.median,
        "eval_step_s": dataclasses.asdict(eval_timing),
        "eval_images_per_s": batch_size / eval_timing.median,
        "train_flops_per_step": train_flops, "eval_flops_per_step": eval_flops,
        "peak_memory_bytes": peak_memory_bytes(),
        "train_temp_bytes": getattr(train.memory_analysis(), "temp_size_in_bytes", None),
        "train_page_faults_per_step": faults.count / (train_timing.repeats + warmup),
    }
