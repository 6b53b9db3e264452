"""``jaxvision predict`` on a folder of PNGs: images/s, and where the time goes (decode, preprocess, model).

Two cases, each on ``--num-images`` PNGs written to a temporary folder:

- LeNet-5 on MNIST-sized 28x28 grey PNGs (scikit-learn's digits upscaled), a run trained for 1 epoch on digits
  at ``--image-size 28`` through ``jaxvision train``;
- ResNet-18 at 224x224 on RGB PNGs (smooth colour fields plus noise, so they compress like photos), a run folder
  with random weights written the way ``jaxvision train`` writes one (``run.json`` + ``model/``): inference
  speed does not depend on what the weights learned.

Each case times ``jaxvision.cli.predict.predict_files`` in this process over the folder (the loop
``jaxvision predict`` runs: decode a batch with Pillow in threads, ``Run.preprocess``, the compiled model;
the compile timed apart), and then the whole command, ``python -m jaxvision.cli.main predict RUN IMAGE``, in a
fresh process on one image: its wall time is the command's fixed cost (imports, loading the run, compiling).

    python -m benchmarks.predict_throughput                   # 1,000 images per case
    python -m benchmarks.predict_throughput --cases lenet5 --num-images 200

Results go to ``--output`` (default ``runs/benchmarks/predict_throughput.json``), outside the source tree.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from benchmarks.timing import machine_info
from jaxvision import jsonio

LENET_SIZE = 28
RESNET_SIZE = 224
# ImageNet's channel statistics, the usual normalisation of a 224x224 RGB network.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_digit_pngs(folder: str, count: int) -> None:
    """``count`` 28x28 grey PNGs: scikit-learn's 8x8 digits, upscaled bilinearly (cycling through the 1,797)."""
    from sklearn.datasets import load_digits

    digits = np.round(load_digits().images * 255.0 / 16.0).astype(np.uint8)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        image = Image.fromarray(digits[i % len(digits)]).resize((LENET_SIZE, LENET_SIZE), Image.Resampling.BILINEAR)
        image.save(os.path.join(folder, f"{i:05d}.png"))


def write_photo_pngs(folder: str, count: int, *, seed: int = 0) -> None:
    """``count`` 224x224 RGB PNGs: a few smooth colour gradients plus noise, about 100 KB each."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:RESNET_SIZE, 0:RESNET_SIZE].astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, (3, 2))
        frequency = rng.uniform(0.01, 0.05, (3, 2))
        channels = [127 + 100 * np.sin(frequency[c, 0] * rows + phase[c, 0]) * np.cos(frequency[c, 1] * columns + phase[c, 1])
                    for c in range(3)]
        pixels = np.stack(channels, -1) + rng.normal(0, 8, (RESNET_SIZE, RESNET_SIZE, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(folder, f"{i:05d}.png"))


def train_lenet_run(path: str) -> None:
    """A LeNet-5 run: 1 epoch on digits upscaled to 28x28, through ``jaxvision train``."""
    from jaxvision.cli.main import main

    status = main(["train", "--model", "lenet5", "--dataset", "digits", "--image-size", str(LENET_SIZE), "--epochs", "1",
                   "--no-progress", "--output-dir", path])
    if status != 0:
        raise RuntimeError(f"training the LeNet-5 run failed with exit status {status}")


def random_resnet_run(path: str, *, num_classes: int = 10, seed: int = 0) -> None:
    """A finished-run folder for ResNet-18 at 224x224x3 with freshly initialised weights."""
    from jaxvision import get_model
    from jaxvision.run_record import save_model, versions, write_run_file

    shape = (RESNET_SIZE, RESNET_SIZE, 3)
    arguments = {"num_classes": num_classes}
    model = get_model("resnet18", **arguments)
    variables = jax.jit(lambda key: model.init(key, np.zeros((1, *shape), np.float32), train=False))(jax.random.key(seed))
    os.makedirs(path, exist_ok=True)
    save_model(path, {name: value for name, value in variables.items() if name in ("params", "batch_stats")})
    write_run_file(path, {
        "status": "complete",
        "command": "benchmarks.predict_throughput (random weights, no training)",
        "model": {"name": "resnet18", "arguments": arguments},
        "num_classes": num_classes,
        "class_names": [f"class{i}" for i in range(num_classes)],
        "input_shape": list(shape),
        "dataset": {"name": "none: random weights"},
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "scale": "pixels / 255, then (x - mean) / std"},
        "preprocessing": {"image_size": list(shape[:2]), "resize": "stretch", "channels": 3},
        "versions": versions(),
        "backend": jax.default_backend(),
    })


def time_in_process(run_dir: str, folder: str, batch_size: int) -> dict:
    """``predict_files`` over the folder once; the compile (before the first batch) is timed apart."""
    from jaxvision.cli.predict import predict_files
    from jaxvision.image_files import list_images
    from jaxvision.run_record import load_run

    began = time.perf_counter()
    run = load_run(run_dir)
    load_seconds = time.perf_counter() - began
    timings = predict_files(run, list_images([folder]), top_k=3, batch_size=batch_size)[1]
    steady = timings.seconds - timings.compile_seconds
    return {"load_run_seconds": load_seconds, **dataclasses.asdict(timings),
            "images_per_second": timings.images_per_second, "images_per_second_after_compile": timings.images / steady}


def time_command(run_dir: str, image: str) -> dict:
    """``jaxvision predict RUN IMAGE`` in a fresh process on one image: the command's fixed cost.

    Python's, JAX's and TensorFlow's imports (decode_image's module imports TensorFlow), loading the run and
    compiling; the rest of a folder then goes at the in-process rate.
    """
    command = [sys.executable, "-m", "jaxvision.cli.main", "predict", run_dir, image, "--json"]
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return {"one_image_wall_seconds": seconds, "timing_line": result.stderr.strip().splitlines()[-1]}


def measure(name: str, run_dir: str, folder: str, count: int, batch_size: int) -> dict:
    timings = time_in_process(run_dir, folder, batch_size)
    command = time_command(run_dir, os.path.join(folder, sorted(os.listdir(folder))[0]))
    startup = command["one_image_wall_seconds"]
    print(f"{name}, {count} PNGs, batch {batch_size}: {timings['images_per_second']:,.1f} images/s "
          f"({timings['images_per_second_after_compile']:,.1f} after compiling): decode {timings['decode_seconds']:.2f} s, "
          f"preprocess {timings['preprocess_seconds']:.2f} s, model {timings['model_seconds']:.2f} s, compile "
          f"{timings['compile_seconds']:.2f} s of {timings['seconds']:.2f} s; load_run {timings['load_run_seconds']:.2f} s")
    print(f"  the command on one image: {startup:.1f} s wall (imports, load, compile); its line: {command['timing_line']}")
    return {"case": name, "images": count, "batch_size": batch_size, "in_process": timings, "command": command,
            "command_estimate_seconds": startup + timings["seconds"] - timings["compile_seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=1000, help="PNGs per case (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="jaxvision predict's --batch-size (default: 64)")
    parser.add_argument("--cases", default="lenet5,resnet18", help="comma-separated: lenet5, resnet18")
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks", "predict_throughput.json"))
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - {"lenet5", "resnet18"})
    if unknown or args.num_images < 1 or args.batch_size < 1:
        parser.error(f"invalid --cases {args.cases!r}, --num-images {args.num_images} or --batch-size {args.batch_size}: "
                     "expected cases from lenet5,resnet18 and positive counts, e.g. --cases lenet5 --num-images 200")
    rows = []
    with tempfile.TemporaryDirectory(prefix="predict_throughput_") as scratch:
        if "lenet5" in cases:
            run_dir, folder = os.path.join(scratch, "lenet5_run"), os.path.join(scratch, "digits28")
            train_lenet_run(run_dir)
            write_digit_pngs(folder, args.num_images)
            rows.append(measure("lenet5 28x28x1", run_dir, folder, args.num_images, args.batch_size))
        if "resnet18" in cases:
            run_dir, folder = os.path.join(scratch, "resnet18_run"), os.path.join(scratch, "photos224")
            random_resnet_run(run_dir)
            write_photo_pngs(folder, args.num_images)
            rows.append(measure("resnet18 224x224x3", run_dir, folder, args.num_images, args.batch_size))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    jsonio.write_json(args.output, {"machine": machine_info(), "backend": jax.default_backend(), "rows": rows})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
