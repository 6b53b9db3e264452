"""``jaxvision visualize RUN_DIR filters|features|saliency|curves``: pictures of what a trained run learned."""

from __future__ import annotations

import argparse
import os
from typing import Any

from jaxvision.cli import arguments

PICTURES_DIR = "visualize"


def _add_output(parser: argparse.ArgumentParser, picture: str) -> None:
    parser.add_argument("--output", default=None, metavar="FILE",
                        help=f"the PNG to write (default: RUN_DIR/{PICTURES_DIR}/{picture}.png)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="pictures of a trained run: first-layer filters, feature maps, saliency and Grad-CAM, learning curves",
        description="Write a PNG of what a trained run (a `jaxvision train --output-dir`) learned, and print its path.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (jaxvision train --output-dir)")
    pictures = parser.add_subparsers(dest="picture", required=True, metavar="PICTURE")

    filters = pictures.add_parser(
        "filters", help="the first convolution's kernels as a grid (an MLP's or linear model's: class templates)")
    filters.add_argument("--max-filters", type=arguments.positive_int, default=64,
                         help="filters shown, the first ones (default 64)")
    _add_output(filters, "filters")

    features = pictures.add_parser(
        "features", help="every convolution's output (before activation and pooling) for one image")
    features.add_argument("image", metavar="IMAGE", help="an image file, decoded as the run's training images were")
    features.add_argument("--layers", type=arguments.spec, default=None, metavar="NAMES",
                          help="comma-separated convolution names, e.g. Conv_0,Conv_1 (default: all)")
    features.add_argument("--max-channels", type=arguments.positive_int, default=32,
                          help="channels shown per layer, the first ones (default 32)")
    _add_output(features, "features")

    saliency = pictures.add_parser(
        "saliency", help="input-gradient saliency and Grad-CAM on the last convolution, over one image")
    saliency.add_argument("image", metavar="IMAGE", help="an image file, decoded as the run's training images were")
    saliency.add_argument("--target", default=None, metavar="CLASS_NAME",
                          help="the class to explain, by name (default: the predicted class)")
    saliency.add_argument("--layer", default=None, metavar="NAME",
                          help="the convolution Grad-CAM uses (default: the last one)")
    _add_output(saliency, "saliency")

    curves = pictures.add_parser("curves", help="loss and accuracy per logged step and per epoch, from the run's logs")
    _add_output(curves, "curves")
    parser.set_defaults(func=run)


def _output_path(args: argparse.Namespace) -> str:
    if args.output is None:
        return os.path.join(args.run_dir, PICTURES_DIR, f"{args.picture}.png")
    if not args.output.lower().endswith(".png"):
        raise ValueError(f"Invalid --output {args.output}: expected a .png file name, e.g. --output {args.picture}.png")
    return args.output


def _read_image(path: str, run: Any) -> Any:
    """One image file as the run's input, uint8 ``[1, H, W, C]``."""
    from jaxvision.image_files import list_images, read_images

    if os.path.isdir(path):
        raise ValueError(f"Invalid IMAGE {path}: it is a folder; expected one image file, e.g. digit.png")
    return read_images(list_images([path]), run)


def _class_index(name: str, class_names: list[str]) -> int:
    from jaxvision._suggest import unknown_name_error

    if name not in class_names:
        raise unknown_name_error("--target class", name, class_names, hint="Pass one of the run's class names.")
    return class_names.index(name)


def _filters(args: argparse.Namespace, run: Any, output: str) -> None:
    from jaxvision.visualize.feature_maps import weighted_layers
    from jaxvision.visualize.filters import first_layer, first_layer_filters, plot_filters

    input_shape = tuple(run.metadata["input_shape"])
    name, rank = first_layer(run.model, run.variables, input_shape)
    filters = first_layer_filters(run.model, run.variables, input_shape=input_shape)
    model_name = run.metadata["model"]["name"]
    titles = None
    if rank == 4:
        title = f"{model_name}: {name}, {len(filters)} filters of {'x'.join(map(str, filters.shape[1:]))}"
    elif len(weighted_layers(run.model, run.variables, input_shape)) == 1:
        # One dense layer and nothing else: a linear classifier, whose unit k scores class k.
        title, titles = f"{model_name}: class templates ({name} weights per class)", run.class_names
    else:
        title = f"{model_name}: {name} weights of the first {min(len(filters), args.max_filters)} of {len(filters)} units"
    plot_filters(filters, output, titles=titles, max_filters=args.max_filters, title=title)


def _features(args: argparse.Namespace, run: Any, output: str) -> None:
    from jaxvision.visualize.feature_maps import feature_maps, plot_feature_maps

    layers = [name.strip() for name in args.layers.split(",")] if args.layers else None
    image = _read_image(args.image, run)
    maps = feature_maps(run.model, run.variables, run.preprocess(image)[0], layers=layers)
    plot_feature_maps(maps, output, max_channels=args.max_channels,
                      title=f"{run.metadata['model']['name']} on {os.path.basename(args.image)}: convolution outputs")


def _saliency(args: argparse.Namespace, run: Any, output: str) -> None:
    from jaxvision.visualize.feature_maps import check_layers, conv_layer_names
    from jaxvision.visualize.saliency import grad_cam, plot_saliency, saliency

    target = _class_index(args.target, run.class_names) if args.target is not None else None
    # Before anything runs: an abstract trace names the convolutions.
    known = conv_layer_names(run.model, run.variables, tuple(run.metadata["input_shape"]))
    check_layers([args.layer] if args.layer is not None else [], known)
    image = _read_image(args.image, run)
    inputs = run.preprocess(image)[0]
    probabilities = run.predict(image)[0]
    target = int(probabilities.argmax()) if target is None else target
    cam = grad_cam(run.model, run.variables, inputs, target=target, layer=args.layer)
    saliency_map = saliency(run.model, run.variables, inputs, target=target)
    kind = "target" if args.target is not None else "predicted"
    label = f"{kind} {run.class_names[target]} ({probabilities[target]:.2f})"
    plot_saliency(image[0], saliency_map, cam, output, label=label, layer=args.layer or known[-1],
                  title=f"{run.metadata['model']['name']} on {os.path.basename(args.image)}")


def run(args: argparse.Namespace) -> int:
    from jaxvision.run_record import load_run, read_run_file

    output = _output_path(args)
    if args.picture == "curves":
        from jaxvision.visualize.curves import plot_learning_curves

        read_run_file(args.run_dir)  # a run, even one without a final model (its curves say why)
        plot_learning_curves(args.run_dir, output)
    else:
        run_record = load_run(args.run_dir)
        {"filters": _filters, "features": _features, "saliency": _saliency}[args.picture](args, run_record, output)
    print(f"wrote {output}")
    return 0
