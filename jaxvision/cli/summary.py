"""``jaxvision summary``: print a model's layers with output shapes, parameters and FLOPs."""

from __future__ import annotations

import argparse

from jaxvision.cli import arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="print a model's per-layer output shapes, parameters and FLOPs",
        description="Trace a model on an input shape (nothing is allocated) and print a per-layer table with totals.",
    )
    parser.add_argument("--model", required=True, help="model name, see jaxvision.list_models(), e.g. vgg16")
    parser.add_argument(
        "--input-shape", type=arguments.shape, required=True,
        help="one example's height,width,channels, e.g. 224,224,3 (ImageNet) or 32,32,3 (CIFAR)",
    )
    parser.add_argument(
        "--num-classes", type=arguments.positive_int, default=None,
        help="logits out (default: the model's own, 1000 for ImageNet models, 10 for CIFAR ones)",
    )
    parser.add_argument("--batch-size", type=arguments.positive_int, default=1, help="batch dimension of the shapes shown")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.models import get_model
    from jaxvision.input_size import check_input_size
    from jaxvision.models.registry import default_num_classes
    from jaxvision.models.summary import summary

    # arguments.shape accepts any number of sizes; the table needs exactly one image's.
    if len(args.input_shape) != 3:
        raise ValueError(
            f"Invalid --input-shape {','.join(map(str, args.input_shape))}: expected H,W,C (3 sizes, got "
            f"{len(args.input_shape)}), e.g. 224,224,3."
        )
    num_classes = args.num_classes if args.num_classes is not None else default_num_classes(args.model)
    model = get_model(args.model, num_classes=num_classes)
    # Before tracing: a 0x0 map would otherwise make a table of empty layers or a ZeroDivisionError.
    check_input_size(
        model, args.model, args.input_shape, fix="Pass --input-shape {height},{width},{channels} or larger."
    )
    print(summary(model, args.input_shape, batch_size=args.batch_size))
    return 0
