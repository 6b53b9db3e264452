"""``jaxvision weights``: torchvision's pretrained ImageNet weights for the zoo, and how to fetch and load them."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list torchvision's pretrained ImageNet weights (file, top-1, SHA-256, URL); --download fetches one",
        description=(
            "Print torchvision's published ImageNet weights for the models jaxvision loads them into, with their "
            "reported accuracy and evaluation transform, and how to use a downloaded file. Nothing is downloaded "
            "unless --download is given."
        ),
    )
    parser.add_argument("--download", metavar="NAME", default=None,
                        help="download this model's weights, checked against their SHA-256 prefix, e.g. resnet18")
    parser.add_argument("--tag", default=None,
                        help="which of the model's weights: IMAGENET1K_V1 (default) or, for resnet50/101/152, "
                             "IMAGENET1K_V2 (torchvision's newer recipe; evaluated after a resize to 232)")
    parser.add_argument("--output-dir", default=".", help="where --download writes the file (default: here)")
    parser.add_argument("--url", default=None,
                        help="with --download: fetch from this URL (a mirror, or file://) instead of download.pytorch.org")
    parser.add_argument("--no-progress", action="store_true", help="with --download: no progress bar")
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON instead of a table")
    parser.set_defaults(func=run)


def _table() -> str:
    from jaxvision.pretrained.catalog import WEIGHTS

    header = ("model", "weights", "file", "top-1", "top-5", "params", "eval transform", "SHA-256", "URL")
    rows = [
        (w.model, w.tag, w.file_name, f"{w.top1:.3f}", f"{w.top5:.3f}", f"{w.num_params / 1e6:.1f}M",
         f"resize {w.resize_size}, crop {w.crop_size}", w.sha256_prefix, w.url)
        for w in WEIGHTS
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


_HOW_TO = """
Accuracy: ImageNet-1k validation, as torchvision reports it, with its evaluation transform (shorter side resized,
bilinear; centre crop; RGB in [0, 1] normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)).

Download one (checked against its SHA-256 prefix; written under a temporary name until it matches):
  jaxvision weights --download resnet18 --output-dir weights/
Or fetch the URL on a machine with internet access and copy the file here. Then:
  jaxvision train --model resnet18 --weights resnet18-f37072fd.pth ...
  python -c "import jaxvision.pretrained as p; v = p.load_torchvision('resnet18', 'resnet18-f37072fd.pth')"
.pth files need PyTorch to read; without it convert once elsewhere to .safetensors or .npz
(jaxvision.pretrained.save_state_dict), which load without torch."""


def run(args: argparse.Namespace) -> int:
    from jaxvision import jsonio
    from jaxvision.pretrained import catalog

    if args.download is None:
        for option, value in (("--tag", args.tag), ("--url", args.url)):
            if value is not None:
                raise ValueError(f"{option} {value} applies to a download: add --download NAME, e.g. --download resnet50.")
        if args.json:
            print(jsonio.dumps([entry.as_dict() for entry in catalog.WEIGHTS], indent=2))
        else:
            print(_table())
            print(_HOW_TO)
        return 0
    # Validate the name and tag before anything touches the network or the disk.
    entry = catalog.get_weights(args.download, args.tag or catalog.DEFAULT_TAG)
    path = catalog.download(entry.model, args.output_dir, tag=entry.tag, url=args.url, progress=not args.no_progress)
    if args.json:
        print(jsonio.dumps({**entry.as_dict(), "path": path}, indent=2))
    else:
        print(f"{entry.model} {entry.tag}: {path} (SHA-256 {entry.sha256_prefix}... checked)")
        print(f"Load it with: jaxvision.pretrained.load_torchvision({entry.model!r}, {path!r})")
    return 0
