"""Image folders: JPEG decode + resize images/s through the real pipeline, against what ResNet-18 consumes.

Writes ``--num-images`` JPEGs of 500x375 (a typical photo's shape; smooth colour fields plus noise, so they
compress like photos rather than like noise) into a temporary folder of 10 classes, then times:

- the up-front pass of ``jaxvision.data.load_splits(folder, image_size=224, resize=...)`` (the second in the
  process; the first also traces tf.data's functions and is reported apart): scanning, Pillow
  decoding and resizing every file in a parallel ``tf.data`` map, the bad-file check and the statistics, in
  memory and (``memory_budget_bytes=0``) into a file cache;
- the epochs that follow: ``Splits.train_batches`` reading the decoded images back (memory, file cache);
- ``decode_image`` on one thread, for the per-core rate;
- a ResNet-18 train step at 224x224 (``jaxvision.train_step``), warmed up, ``block_until_ready``, median.

The margin is decode images/s over train-step images/s: above 1, decoding never holds training up, even if
every epoch decoded afresh.

    python -m benchmarks.image_folder_throughput --num-images 512

Results go to ``--output`` (default ``runs/benchmarks/image_folder_throughput.json``), outside the source tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np
from PIL import Image

import jaxvision
from benchmarks.timing import machine_info
from jaxvision import data, jsonio

NUM_CLASSES = 10
PHOTO_SIZE = (375, 500)  # (height, width)


def write_photos(root: str, count: int, *, seed: int = 0) -> int:
    """Writes ``count`` photo-like 500x375 JPEGs (quality 90) into ``root/<class>/``; returns their total bytes."""
    rng = np.random.default_rng(seed)
    height, width = PHOTO_SIZE
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    total = 0
    for i in range(count):
        # A few smooth colour gradients plus sensor-like noise: JPEG sizes near a real photo's (~50-100 KB).
        phase = rng.uniform(0, 2 * np.pi, (3, 2))
        frequency = rng.uniform(0.005, 0.03, (3, 2))
        channels = [
            127 + 100 * np.sin(frequency[c, 0] * rows + phase[c, 0]) * np.cos(frequency[c, 1] * columns + phase[c, 1])
            for c in range(3)
        ]
        pixels = np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3))
        folder = os.path.join(root, f"class{i % NUM_CLASSES}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        total += os.path.getsize(path)
    return total


def _timed_load(root: str, **options) -> tuple[float, data.Splits]:
    start = time.perf_counter()
    splits = data.load_splits(root, **options)
    return time.perf_counter() - start, splits


def epoch_images_per_s(splits: data.Splits) -> float:
    """Images/s of one epoch of ``train_batches`` after its first batch, normalised float32 on the host."""
    iterator = splits.train_batches(0)
    next(iterator)
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += batch.images.shape[0]
    return images / (time.perf_counter() - start)


def single_thread_images_per_s(paths: list[str], image_size: tuple[int, int], resize: str) -> float:
    start = time.perf_counter()
    for path in paths:
        data.decode_image(path, image_size=image_size, resize=resize, channels=3)
    return len(paths) / (time.perf_counter() - start)


def resnet18_images_per_s(batch_size: int, image_size: tuple[int, int], *, warmup: int, repeats: int) -> dict:
    """Training images/s of ResNet-18's train step on this backend: median of ``repeats`` synced steps."""
    model = jaxvision.get_model("resnet18", num_classes=NUM_CLASSES)
    optimizer = jaxvision.make_optimizer("sgd", 0.01, momentum=0.9)
    init_key, data_key, step_key = jax.random.split(jax.random.key(0), 3)
    state = jaxvision.create_train_state(model, (*image_size, 3), optimizer, init_key)
    images = jax.random.normal(data_key, (batch_size, *image_size, 3), jax.numpy.float32)
    labels = jax.numpy.arange(batch_size, dtype=jax.numpy.int32) % NUM_CLASSES
    batch = jaxvision.Batch.of(images, labels)
    start = time.perf_counter()
    for _ in range(warmup):
        state, metrics = jaxvision.train_step(state, batch, step_key)
        jax.block_until_ready(metrics)
    warmup_seconds = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = jaxvision.train_step(state, batch, step_key)
        jax.block_until_ready(metrics)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"images_per_s": batch_size / median, "step_s": {"median": median, "min": min(seconds), "max": max(seconds)},
            "warmup_s": warmup_seconds, "repeats": repeats, "backend": jax.default_backend()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--resize", choices=data.RESIZE_MODES, default="center-crop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2, help="untimed ResNet-18 steps (the first compiles)")
    parser.add_argument("--repeats", type=int, default=5, help="timed ResNet-18 steps")
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks", "image_folder_throughput.json"))
    args = parser.parse_args(argv)
    size = (args.image_size, args.image_size)
    options = dict(image_size=size, resize=args.resize, batch_size=args.batch_size, eval_batch_size=256)

    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.join(scratch, "photos")
        start = time.perf_counter()
        jpeg_bytes = write_photos(root, args.num_images)
        print(f"wrote {args.num_images} JPEGs of 500x375 ({jpeg_bytes / args.num_images / 1e3:.0f} KB each) in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        previous_cache = os.environ.get("JAXVISION_CACHE_DIR")
        os.environ["JAXVISION_CACHE_DIR"] = os.path.join(scratch, "cache")  # a fresh file cache, removed after
        try:
            # The first load in a process also traces tf.data's functions (a fixed cost, not per image).
            cold_s, _ = _timed_load(root, **options)
            memory_s, in_memory = _timed_load(root, **options)
            print(f"decode pass, in memory: {args.num_images / memory_s:.1f} images/s ({memory_s:.2f} s; first load in "
                  f"the process {cold_s:.2f} s)", flush=True)
            streamed_s, streamed = _timed_load(root, memory_budget_bytes=0, **options)
            print(f"decode pass, into a file cache: {args.num_images / streamed_s:.1f} images/s", flush=True)
            reread_s, _ = _timed_load(root, memory_budget_bytes=0, **options)
            print(f"load again, file cache already written: {args.num_images / reread_s:.1f} images/s", flush=True)
            epoch_memory = epoch_images_per_s(in_memory)
            epoch_file = epoch_images_per_s(streamed)
            print(f"epochs after the pass: {epoch_memory:.0f} images/s from memory, {epoch_file:.0f} from the file cache",
                  flush=True)
            paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)[:64]
            one_thread = single_thread_images_per_s(paths, size, args.resize)
            print(f"decode_image on one thread: {one_thread:.1f} images/s", flush=True)
        finally:
            if previous_cache is None:
                os.environ.pop("JAXVISION_CACHE_DIR", None)
            else:
                os.environ["JAXVISION_CACHE_DIR"] = previous_cache

    consumer = resnet18_images_per_s(args.batch_size, size, warmup=args.warmup, repeats=args.repeats)
    decode_rate = args.num_images / memory_s
    print(f"ResNet-18 train step at {args.image_size}x{args.image_size}, batch {args.batch_size}: "
          f"{consumer['step_s']['median']:.2f} s/step, {consumer['images_per_s']:.1f} images/s", flush=True)
    margin = decode_rate / consumer["images_per_s"]
    print(f"margin: decode {decode_rate:.1f} images/s / consumption {consumer['images_per_s']:.1f} images/s "
          f"= {margin:.1f}x")
    summary = {
        "num_images": args.num_images, "photo_size": list(PHOTO_SIZE), "jpeg_kb_mean": jpeg_bytes / args.num_images / 1e3,
        "image_size": list(size), "resize": args.resize, "batch_size": args.batch_size,
        "decode_pass_images_per_s": {"memory": decode_rate, "file_cache": args.num_images / streamed_s,
                                     "file_cache_already_written": args.num_images / reread_s},
        "decode_pass_s": {"memory": memory_s, "memory_first_in_process": cold_s, "file_cache": streamed_s,
                          "file_cache_already_written": reread_s},
        "epoch_images_per_s": {"memory": epoch_memory, "file_cache": epoch_file},
        "decode_image_one_thread_images_per_s": one_thread,
        "resnet18_train_step": consumer,
        "margin": margin,
        "margin_definition": "decode pass images/s (in memory) / ResNet-18 train step images/s",
        "machine": machine_info(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    jsonio.write_json(args.output, summary)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
