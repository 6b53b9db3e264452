"""``python -m benchmarks.pretrained_parity``: jaxvision's logits against torchvision's, the same state_dict.

For each model ``jaxvision.pretrained`` loads: a PyTorch twin of the torchvision model
(``benchmarks.torchvision_twins``, torchvision's module names and order) with every weight and
batch-norm statistic redrawn; its ``state_dict()`` through ``load_torchvision`` into
``jaxvision.get_model(name, num_classes=1000, kernels=...)``; both in eval mode on the same batch of
224x224 images (the adaptive pools are the identity there, as with torchvision's own weights). The
figure is the maximum relative logit difference ``max |ours - theirs| / max |theirs|``, with whether
the two agree on every image's top class.

    python -m benchmarks.pretrained_parity                       # all 14 models, reference and CPU layers
    python -m benchmarks.pretrained_parity --models resnet18,vgg11 --kernels reference --json
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import torch

from benchmarks import torchvision_twins as twins
from jaxvision.backends.compile import compiler_options
from jaxvision.models import get_model
from jaxvision.pretrained import SUPPORTED_MODELS, load_torchvision

KERNELS = ("reference", "cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pretrained_parity", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SUPPORTED_MODELS), help="comma-separated (default: all)")
    parser.add_argument("--kernels", default=",".join(KERNELS),
                        help="comma-separated layers to build jaxvision's models with: reference, cpu (default both)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    args.models = args.models.split(",")
    args.kernels = args.kernels.split(",")
    unknown = [m for m in args.models if m not in SUPPORTED_MODELS] + [k for k in args.kernels if k not in KERNELS]
    if unknown:
        parser.error(f"Unknown model or kernels {', '.join(unknown)}: expected models from {', '.join(SUPPORTED_MODELS)} "
                     f"and kernels from {', '.join(KERNELS)}.")
    if args.image_size < 63 or args.batch_size < 1:
        parser.error(f"Invalid --image-size {args.image_size} / --batch-size {args.batch_size}: expected >= 63 "
                     f"(AlexNet's smallest input) and >= 1.")
    return args


def parity_rows(name: str, kernels: list[str], *, image_size: int, batch_size: int, seed: int) -> list[dict]:
    """One row per ``kernels`` choice: relative logit difference and top-1 agreement against the twin."""
    twin = twins.random_twin(name, seed=seed)
    images = np.random.default_rng(seed).normal(size=(batch_size, image_size, image_size, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    start = time.perf_counter()
    variables = jax.device_put(load_torchvision(name, twins.state_dict_numpy(twin)))
    load_s = time.perf_counter() - start
    del twin
    rows = []
    for choice in kernels:
        model = get_model(name, num_classes=1000, kernels=choice)
        options = compiler_options(model, has_batch_norm="batch_stats" in variables)
        forward = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options or None)
        ours = np.asarray(forward(variables, images))
        rows.append({
            "model": name, "kernels": choice, "image_size": image_size, "batch_size": batch_size,
            "max_relative_difference": float(np.abs(ours - theirs).max() / np.abs(theirs).max()),
            "max_abs_logit": float(np.abs(theirs).max()),
            "top1_agree": bool((ours.argmax(-1) == theirs.argmax(-1)).all()),
            "load_seconds": load_s,
        })
    jax.clear_caches()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | kernels | max rel. logit diff | top-1 agrees | load s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['kernels']} | {r['max_relative_difference']:.1e} | "
                     f"{'yes' if r['top1_agree'] else 'NO'} | {r['load_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for name in args.models:
        rows += parity_rows(name, args.kernels, image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
        if not args.json:
            print(" ".join(f"{r['model']}/{r['kernels']}: {r['max_relative_difference']:.1e}" for r in rows[-len(args.kernels):]),
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"\n{args.batch_size} random images {args.image_size}x{args.image_size}, random weights and batch-norm "
              f"statistics, eval mode, float32:\n")
        print(table(rows))
    return rows


if __name__ == "__main__":
    main()
