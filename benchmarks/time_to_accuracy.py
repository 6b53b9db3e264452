"""Time to accuracy on the real MNIST: wall-clock seconds, compile included, until the test accuracy
reaches the target, for jaxvision and for the same recipe in PyTorch.

Both frameworks start from the same normalised arrays in memory (loading them is not counted), draw
each epoch's order on the host (``numpy`` / ``torch.randperm``), gather batches by index on the
device, and evaluate the full test set at the end of every epoch; the clock stops at the first epoch
at or above the target (or after the last). The recipe is Adam with a one-cycle schedule. jaxvision's
``compile_s`` covers the initialisation and the compiles of the train and eval steps.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.jax_bench import with_conv
from jaxvision.models import get_model
from jaxvision.optimizers import make_optimizer
from jaxvision.step_compilation import step_compiler_options
from jaxvision.train import Batch, compile_initialization, eval_step, lower_train_state, train_step


@dataclasses.dataclass(frozen=True)
class Recipe:
    model: str = "lenet5"
    batch_size: int = 128
    learning_rate: float = 3e-3
    epochs: int = 2
    optimizer: str = "adam"
    schedule: str = "onecycle"

    def __str__(self) -> str:
        return f"{self.optimizer} {self.schedule} lr={self.learning_rate} batch={self.batch_size} epochs={self.epochs}"


def load_mnist() -> dict[str, np.ndarray]:
    """MNIST train (all 60,000 but a 6-example validation sliver) and test, normalised, in memory."""
    from jaxvision.data import load_splits

    splits = load_splits("mnist", validation_fraction=1e-4)
    train_x, train_y = splits.arrays("train")
    test_x, test_y = splits.arrays("test")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def run_jax(data: dict[str, np.ndarray], recipe: Recipe, *, seed: int, target: float, conv: str = "model",
            eval_batch_size: int = 1000) -> dict[str, Any]:
    if len(data["test_y"]) % eval_batch_size:
        raise ValueError(f"eval_batch_size={eval_batch_size} does not divide the {len(data['test_y'])} test examples: "
                         "pass a divisor, e.g. 1000 for MNIST's 10,000.")
    start = time.perf_counter()
    train_x, train_y = jax.device_put(data["train_x"]), jax.device_put(data["train_y"])
    test_x, test_y = jax.device_put(data["test_x"]), jax.device_put(data["test_y"])
    steps = len(data["train_y"]) // recipe.batch_size
    model = get_model(recipe.model)
    optimizer = make_optimizer(recipe.optimizer, recipe.learning_rate, total_steps=steps * recipe.epochs,
                               schedule=recipe.schedule)
    key = jax.random.key(seed)

    # The data are arguments, not closed-over constants: XLA would embed 188 MB of MNIST in the
    # program and take seconds longer to compile it.
    @jax.jit
    def indexed_step(state, images, labels, order, index):
        rows = jax.lax.dynamic_slice_in_dim(order, index * recipe.batch_size, recipe.batch_size)
        batch = Batch(images=images[rows], labels=labels[rows], mask=jnp.ones(recipe.batch_size))
        return train_step(state, batch, key)[0]

    # The test set in chunks: one 10,000-image batch is several times slower on CPU (its activations
    # fall out of cache).
    @jax.jit
    def count_correct(state, images, labels):
        chunks = (images.reshape(-1, eval_batch_size, *images.shape[1:]), labels.reshape(-1, eval_batch_size))
        metrics = jax.lax.map(lambda chunk: eval_step(state, Batch.of(*chunk)), chunks)
        return jnp.sum(metrics["correct"])

    # Each epoch's order is drawn on the host, as torch.randperm does: jax.random.permutation would
    # cost a ~0.5 s compile of its own for a 60,000-long shuffle.
    shuffle = np.random.default_rng(seed)
    order = jax.device_put(shuffle.permutation(len(data["train_y"])).astype(np.int32))
    compile_start = time.perf_counter()
    # The three programs compile concurrently (XLA compiles on one thread each, without the GIL): the
    # steps are lowered against the initialisation's abstract output while it compiles. MnistCNN,
    # batch 64, 2 cores: 2.00-2.18 s one after another, 1.69-1.77 s together.
    lowered_init = lower_train_state(model, data["train_x"].shape[1:], optimizer, key)
    with ThreadPoolExecutor(3) as compiles:
        init = compiles.submit(compile_initialization, lowered_init)
        apply_fn = with_conv(lowered_init.out_info.apply_fn, conv)
        abstract_state = lowered_init.out_info.replace(apply_fn=apply_fn)
        # Compiled as jaxvision.fit compiles its steps for this network (step_compilation.py).
        options = step_compiler_options(abstract_state)
        step = compiles.submit(indexed_step.lower(abstract_state, train_x, train_y, order, 0).compile, options)
        evaluate = compiles.submit(count_correct.lower(abstract_state, test_x, test_y).compile, options)
        state = init.result()(key)
        state = jax.block_until_ready(state.replace(apply_fn=apply_fn))
        compiled_step, compiled_eval = step.result(), evaluate.result()
    compile_s = time.perf_counter() - compile_start
    accuracy, epoch = 0.0, 0
    for epoch in range(1, recipe.epochs + 1):
        if epoch > 1:
            order = jax.device_put(shuffle.permutation(len(data["train_y"])).astype(np.int32))
        for index in range(steps):
            state = compiled_step(state, train_x, train_y, order, index)
        accuracy = float(compiled_eval(state, test_x, test_y)) / len(data["test_y"])
        if accuracy >= target:
            break
    return {"framework": "jaxvision", "model": recipe.model, "recipe": str(recipe), "seed": seed, "epochs_run": epoch,
            "test_accuracy": accuracy, "seconds": time.perf_counter() - start, "compile_s": compile_s,
            "compiler_options": options, "reached_target": accuracy >= target}


def run_torch(data: dict[str, np.ndarray], recipe: Recipe, *, seed: int, target: float) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from benchmarks.torch_models import build_torch_model

    start = time.perf_counter()
    torch.manual_seed(seed)
    train_x = torch.from_numpy(np.ascontiguousarray(data["train_x"].transpose(0, 3, 1, 2)))
    train_y = torch.from_numpy(data["train_y"].astype(np.int64))
    test_x = torch.from_numpy(np.ascontiguousarray(data["test_x"].transpose(0, 3, 1, 2)))
    test_y = torch.from_numpy(data["test_y"].astype(np.int64))
    steps = len(train_y) // recipe.batch_size
    model = build_torch_model(recipe.model, 10)
    if recipe.optimizer != "adam" or recipe.schedule != "onecycle":
        raise ValueError(f"The PyTorch side implements adam + onecycle only, not {recipe}.")
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
    # optax.cosine_onecycle_schedule's defaults: 30% warm-up from peak/25, cosine down to peak/25e4.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.learning_rate, total_steps=steps * recipe.epochs, pct_start=0.3,
        anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e4)
    accuracy, epoch = 0.0, 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = torch.randperm(len(train_y))
        for index in range(steps):
            rows = order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(train_x[rows]), train_y[rows]).backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
        if accuracy >= target:
            break
    return {"framework": "pytorch", "model": recipe.model, "recipe": str(recipe), "seed": seed, "epochs_run": epoch,
            "test_accuracy": accuracy, "seconds": time.perf_counter() - start, "compile_s": None,
            "reached_target": accuracy >= target}


# The fastest first (--quick runs only it). MnistCNN with Adam/one-cycle in one epoch reaches 99% only
# just, so the recipe is the one over 99.0% for every seed tried in both frameworks; any change to the
# gradients' float rounding reshuffles which settings make it. With ConvPool (models/conv_pool.py:
# pooling before the bias and ReLU) and max pooling's gradient to the first maximum of each window
# (layers.max_pool_2d), seeds 0/1/2: 5e-3/48 99.04/99.04/99.05% (11.0-11.3 s), 5e-3/64
# 98.99/98.96/99.00%, 4e-3/48 98.95/99.15/99.04%, 6e-3/64 98.95/98.91/98.96%. With ConvPool alone:
# 5e-3/48 99.08/99.05/99.03% (PyTorch 99.00/99.03%, seeds 0/1), 4e-3/48 99.09/99.06/99.02%, 5e-3/64
# 98.81/99.08/98.97%, 4e-3/64 98.86/99.06/98.97%, 6e-3/64 98.91/99.05/99.07%, 6e-3/48
# 98.91/99.10/99.00%, 3e-3/32 98.99/99.13/99.10%. Before both, with
# XLA:CPU's legacy emitters (step_compilation.py), seed 0 unless noted: 5e-3/64 99.03/99.01/99.01% (PyTorch
# 99.04/99.06%), 4e-3/64 98.95%, 6e-3/64 98.99%, 7e-3/64 98.86%, 8e-3/64 98.90%, 6e-3/80 98.89%, 6e-3/96
# 98.90%; with XLA's default emitters 6e-3/64 (99.00/99.07/99.14%). Earlier still: 4e-3/48
# 98.91/99.05/99.07%, 5e-3/48 98.96/99.11%, 2e-3/128 98.72%, 4e-3/128 98.85%, 3e-3/64 98.93%. LeNet-5
# needs 3-4 epochs (98.83% after 2, 98.98% after 3 at 3e-3/128); SimpleCNN costs ~5x MnistCNN's FLOPs
# per image. The second row is PyTorch's own fastest recipe found (batch 128, 5e-3: 99.02% in 11.7-13 s
# with seed 0, 98.89% with seed 1), where its kernels run fastest on real digits (benchmarks/inputs.py).
RECIPES = (
    Recipe("mnist_cnn", batch_size=48, learning_rate=5e-3, epochs=1),
    Recipe("mnist_cnn", batch_size=128, learning_rate=5e-3, epochs=1),
    Recipe("lenet5", batch_size=128, learning_rate=3e-3, epochs=4),
    Recipe("simple_cnn", batch_size=128, learning_rate=1e-3, epochs=1),
)
