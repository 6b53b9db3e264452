"""``jaxvision predict``: the most probable classes of image files, by a trained run."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxvision import jsonio
from jaxvision.cli import arguments

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 64
# Fewer images than this finish before a progress bar would tell anyone anything.
PROGRESS_FROM = 100


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="class probabilities of image files by a trained run",
        description="Decode image files as the run's training data was (size, resize mode, channels, normalisation "
                    "from its run.json) and print each image's most probable classes.",
        epilog="Example: jaxvision predict runs/lenet5_mnist photo.png more_photos/ --top-k 2. Timings go to stderr.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run: the --output-dir of `jaxvision train`")
    parser.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+",
                        help="image files (PNG, JPEG, BMP, GIF) and folders of them (walked in sorted order)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help=f"classes shown per image, most probable first (default: {DEFAULT_TOP_K}, or the "
                             "number of classes if fewer)")
    parser.add_argument("--tta", type=arguments.spec, default=None, metavar="VIEWS",
                        help="average the probabilities over test-time views: 2, 10, 30, 150 or e.g. flip,crops:5")
    parser.add_argument("--batch-size", type=arguments.positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"images decoded and predicted at a time (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--json", action="store_true",
                        help='print only a JSON list of {"image", "predictions": [{"class", "probability"}, ...]}')
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--task", choices=("classify", "binary", "regress", "segment", "detect"), default=None,
                        help="the run's task (default: read from its run.json; a different one is refused)")
    parser.add_argument("--output-dir", default=None,
                        help="segment/detect runs: where the mask PNGs and predictions.png go (default: RUN_DIR/predictions)")
    parser.add_argument("--score-threshold", type=arguments.open_fraction, default=0.3,
                        help="detect runs: boxes shown and printed from this score up (default: 0.3)")
    parser.set_defaults(func=run)


def check_top_k(top_k: int | None, num_classes: int) -> int:
    """``top_k``, or the default for ``num_classes`` classes; raises ValueError outside [1, num_classes]."""
    if top_k is None:
        return min(DEFAULT_TOP_K, num_classes)
    if not 1 <= top_k <= num_classes:
        raise ValueError(f"Invalid --top-k {top_k}: expected an integer in [1, {num_classes}] (the run's classes), "
                         f"e.g. --top-k {min(DEFAULT_TOP_K, num_classes)}.")
    return top_k


def top_predictions(probabilities: np.ndarray, class_names: Sequence[str], top_k: int) -> list[dict]:
    """The ``top_k`` most probable classes, most probable first (ties: the lower class index first)."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [{"class": class_names[i], "probability": float(probabilities[i])} for i in order]


def prediction_line(path: str, predictions: Sequence[dict]) -> str:
    """``photo.png: dog 0.981, cat 0.019``."""
    return f"{path}: " + ", ".join(f"{p['class']} {p['probability']:.3f}" for p in predictions)


@dataclasses.dataclass
class Timings:
    """Where the seconds of a prediction went (wall clock, in this process).

    Attributes:
      images: images predicted.
      seconds: the whole loop, first decode to last result.
      decode_seconds: reading and decoding the files (Pillow, threads), resizing included.
      preprocess_seconds: scaling and normalising (``Run.preprocess``), and the copy to the device.
      model_seconds: the forward passes, device sync included.
      compile_seconds: compiling the model, once, before the first pass.
    """

    images: int
    seconds: float
    decode_seconds: float
    preprocess_seconds: float
    model_seconds: float
    compile_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (f"{self.images} images in {self.seconds:.2f} s ({self.images_per_second:,.1f} images/s: decode "
                f"{self.decode_seconds:.2f} s, preprocess {self.preprocess_seconds:.2f} s, model "
                f"{self.model_seconds:.2f} s, compile {self.compile_seconds:.2f} s)")


def predict_files(
    run: Any,
    paths: Sequence[str],
    *,
    top_k: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta: int | str | None = None,
    progress: bool = False,
    on_result: Callable[[dict], None] | None = None,
    predictor: Any = None,
) -> tuple[list[dict], Timings]:
    """The ``top_k`` most probable classes of each image file, decoded and predicted a batch at a time.

    Args:
      run: a ``Run`` (``jaxvision.load_run``).
      paths: image files (``jaxvision.image_files.list_images``).
      top_k: classes kept per image.
      batch_size: files decoded and predicted at a time.
      tta: a test-time view set, averaging probabilities over the views.
      progress: a progress bar on stderr.
      on_result: called with each result as soon as its batch is predicted.
      predictor: a ``jaxvision.evaluation.Predictor`` of ``run`` to reuse (already compiled, say); by default
        one is made for ``batch_size`` and ``tta``, which are then ignored.

    Returns:
      ``[{"image": path, "predictions": [{"class", "probability"}, ...]}, ...]`` in the order of ``paths``,
      and the Timings.
    """
    from tqdm.auto import tqdm

    from jaxvision.evaluation import Predictor
    from jaxvision.image_files import iter_image_chunks

    if predictor is None:
        predictor = Predictor(run, batch_size=min(batch_size, max(1, len(paths))), tta=tta)
    model_before, compile_before = predictor.model_seconds, predictor.compile_seconds
    class_names = run.class_names
    results = []
    decode_seconds = preprocess_seconds = 0.0
    start = time.perf_counter()
    bar = tqdm(total=len(paths), unit="image", file=sys.stderr, disable=not progress)
    chunks = iter_image_chunks(paths, run, chunk_size=predictor.batch_size)
    while True:
        began = time.perf_counter()
        chunk = next(chunks, None)
        decode_seconds += time.perf_counter() - began
        if chunk is None:
            break
        indices, images = chunk
        began = time.perf_counter()
        inputs = run.preprocess(images).block_until_ready()
        preprocess_seconds += time.perf_counter() - began
        for index, probabilities in zip(indices, np.exp(predictor(inputs))):
            results.append({"image": paths[index], "predictions": top_predictions(probabilities, class_names, top_k)})
            if on_result is not None:
                on_result(results[-1])
        bar.update(len(indices))
    bar.close()
    timings = Timings(images=len(results), seconds=time.perf_counter() - start, decode_seconds=decode_seconds,
                      preprocess_seconds=preprocess_seconds, model_seconds=predictor.model_seconds - model_before,
                      compile_seconds=predictor.compile_seconds - compile_before)
    return results, timings


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from jaxvision.augment import count_views
    from jaxvision.image_files import decode_options, list_images
    from jaxvision.run_record import load_run, read_run_file

    # Everything that can be checked without the model, before it is loaded or compiled.
    metadata = read_run_file(args.run_dir)
    from jaxvision.cli.task_outputs import check_task_option, predict_task

    if check_task_option(args.task, metadata, args.run_dir) != "classify":
        for flag, value in (("--top-k", args.top_k), ("--tta", args.tta)):
            if value is not None:
                raise ValueError(f"Invalid {flag} {value} for a --task {metadata['task']['name']} run: it applies to "
                                 "classification runs; drop it")
        decode_options(metadata)
        return predict_task(args, load_run(args.run_dir), list_images(args.images))
    top_k = check_top_k(args.top_k, int(metadata["num_classes"]))
    if args.tta:
        count_views(args.tta)
    decode_options(metadata)
    paths = list_images(args.images)

    def show(result: dict) -> None:
        tqdm.write(prediction_line(result["image"], result["predictions"]), file=sys.stdout)

    results, timings = predict_files(
        load_run(args.run_dir), paths, top_k=top_k, batch_size=args.batch_size, tta=args.tta,
        progress=not args.no_progress and len(paths) >= PROGRESS_FROM, on_result=None if args.json else show,
    )
    if args.json:
        print(jsonio.dumps(results, indent=2))
    print(timings.line(), file=sys.stderr)
    return 0
