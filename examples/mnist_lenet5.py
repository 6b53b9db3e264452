"""Train LeNet-5 on MNIST with jaxvision's Python API: the main job, written out step by step.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python examples/mnist_lenet5.py --epochs 3
"""

import argparse

import jax
from tqdm import tqdm

import jaxvision
from jaxvision import data


def main(dataset: str = "mnist", epochs: int = 3, batch_size: int = 64, seed: int = 0) -> float:
    splits = data.load_splits(dataset, batch_size=batch_size, seed=seed)  # train/val/test, normalised
    model = jaxvision.get_model("lenet5", num_classes=splits.meta.num_classes)
    optimizer = jaxvision.make_optimizer("adam", 3e-3, schedule="onecycle", total_steps=epochs * splits.steps_per_epoch)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    state = jaxvision.create_train_state(model, splits.meta.image_shape, optimizer, init_key)
    # The steps built from their parts; they compile with this network's options, as jaxvision.fit's do.
    train_step, eval_step = jaxvision.make_train_step(loss="cross_entropy"), jaxvision.make_eval_step(loss="cross_entropy")

    for epoch in range(epochs):
        for batch in tqdm(splits.train_batches(epoch), total=splits.steps_per_epoch, desc=f"epoch {epoch + 1}"):
            state, metrics = train_step(state, batch, train_key)  # the key is folded with the step
        validation = jaxvision.evaluate(state, splits.eval_batches("validation"), step=eval_step)
        print(f"epoch {epoch + 1}: last train loss {float(metrics['loss']):.4f}, val accuracy {validation['accuracy']:.4f}")

    test = jaxvision.evaluate(state, splits.eval_batches("test"), step=eval_step)
    print(f"test accuracy {test['accuracy']:.4f} on {int(test['count'])} images")
    return test["accuracy"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.dataset, args.epochs, args.batch_size, args.seed)
