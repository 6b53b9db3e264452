"""``jaxvision export``: a trained run as a StableHLO file or a TensorFlow SavedModel that serves without jaxvision."""

from __future__ import annotations

import argparse
import os
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from jaxvision.export import DEFAULT_PLATFORMS, FORMATS, PLATFORMS

    parser = subparsers.add_parser(
        "export",
        help="write a run's preprocessing, model and softmax as StableHLO or a TensorFlow SavedModel",
        description=(
            "Export a finished run as one function from float32 images in [0, 1] of the run's input shape (any batch) "
            "to class probabilities, its normalisation and weights inside: a jax.export StableHLO file (plus FILE.json "
            "naming the classes) or a TensorFlow SavedModel folder for TF Serving."
        ),
    )
    parser.add_argument("run_dir", help="a finished run's folder (the --output-dir of `jaxvision train`)")
    parser.add_argument("--format", choices=FORMATS, default="stablehlo",
                        help="stablehlo: one file for jax.export.deserialize; savedmodel: a folder for TensorFlow")
    parser.add_argument("--output", required=True,
                        help="the file (stablehlo, e.g. model.stablehlo) or folder (savedmodel) to write")
    parser.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS),
                        help=f"comma-separated, from {', '.join(PLATFORMS)}: where the export may run "
                             f"(default {','.join(DEFAULT_PLATFORMS)})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def run(args: argparse.Namespace) -> int:
    from jaxvision import jsonio
    from jaxvision.export import export_run, sidecar_path

    platforms = args.platforms.split(",")
    start = time.perf_counter()
    # export_run checks the format, platforms and output before it loads the run or compiles anything.
    path = export_run(args.run_dir, args.output, format=args.format, platforms=platforms, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    description = jsonio.read_json(sidecar_path(path, args.format))
    shape = ", ".join(str(size) for size in description["input_shape"])
    print(f"wrote {path} ({args.format}, {_size(path) / 1e6:.2f} MB, for {','.join(platforms)}) and "
          f"{sidecar_path(path, args.format)} (class names, input shape) in {seconds:.1f}s")
    print(f"input: images float32[batch, {shape}], pixel values in [0, 1], any batch >= 1 (the run's normalisation "
          f"is inside); output: float32[batch, {description['num_classes']}] class probabilities, in the order of "
          "the JSON's class_names")
    if args.format == "stablehlo":
        print("call it (Python with jax, no jaxvision): import jax; "
              f"f = jax.export.deserialize(open({path!r}, 'rb').read()); probabilities = f.call(images)")
    else:
        print(f"call it (Python with tensorflow): import tensorflow as tf; m = tf.saved_model.load({path!r}); "
              "probabilities = m.serve(images)  # or signatures['serving_default'](images=...)['probabilities']")
        print(f"serve it: docker run -p 8501:8501 -v {os.path.abspath(path)}:/models/model/1 -e MODEL_NAME=model "
              "tensorflow/serving, then POST {\"instances\": images} to http://localhost:8501/v1/models/model:predict")
    return 0
