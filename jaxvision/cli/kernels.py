"""``jaxvision kernels``: an image filtered by one classical kernel (edge, blur, Sobel, ...), or a grid of all."""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from jaxvision.kernels import KERNELS

    parser = subparsers.add_parser(
        "kernels",
        help="filter an image with a classical 3x3 kernel (edge, blur, Sobel, ...), or all of them as a grid",
        description=(
            "Correlate an image with a named 3x3 kernel (as deep learning's convolution does: no flip), per channel, "
            "edges replicated so the output keeps the image's size, and clip the result to 0-255."
        ),
    )
    parser.add_argument("image", help="a grayscale or RGB image file (PNG, JPEG, ...); an alpha channel is dropped")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--kernel", help=f"the kernel's name: {', '.join(KERNELS)}")
    which.add_argument("--all", action="store_true", help="a grid of the image under every kernel, each panel titled")
    parser.add_argument(
        "--output", default=None,
        help="where the picture goes, its format from the extension (default: runs/kernels/<image>_<kernel or all>.png)",
    )
    parser.set_defaults(func=run)


def _read_image(path: str) -> np.ndarray:
    """``path`` as float32 pixel values 0-255, ``[height, width]`` (grayscale) or ``[height, width, 3]``."""
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise ValueError(f"Image file {path!r} not found: expected the path of a PNG, JPEG or other image file. Check the path{where}.")
    try:
        with Image.open(path) as image:
            grayscale = image.getbands()[0] in ("1", "L", "I", "F")
            pixels = np.asarray(image.convert("L" if grayscale else "RGB"), np.float32)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Cannot read {path!r} as an image ({error}): pass a PNG, JPEG or other file Pillow opens.") from None
    return pixels


def _check_output_format(path: str, *, grid: bool) -> None:
    """Raises, before any work is done, if the output's extension names no format its writer knows."""
    extension = os.path.splitext(path)[1].lower()
    if grid:
        from matplotlib.backend_bases import FigureCanvasBase

        known = {f".{name}" for name in FigureCanvasBase.get_supported_filetypes()}
    else:
        from PIL import Image

        known = {ext for ext, format_name in Image.registered_extensions().items() if format_name in Image.SAVE}
    if extension not in known:
        raise ValueError(
            f"Cannot write {path!r}: its extension {extension or '(none)'!r} names no image format the "
            f"{'grid' if grid else 'image'} writer knows. Use e.g. --output out.png."
        )


def filter_image(pixels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``pixels`` (0-255, [h, w] or [h, w, c]) correlated with ``kernel``, the same shape, not yet clipped."""
    from jaxvision.kernels import correlate2d

    # Replicated rather than zero padding: zeros would draw a false edge around any image whose border
    # is not black.
    margin = (kernel.shape[0] // 2, kernel.shape[1] // 2)
    widths = [(margin[0], margin[0]), (margin[1], margin[1])] + [(0, 0)] * (pixels.ndim - 2)
    return np.asarray(correlate2d(np.pad(pixels, widths, mode="edge"), kernel))


def _write_atomically(path: str, write) -> None:
    """Calls ``write(temporary_path)`` and moves the file into place, so a failure leaves no partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=os.path.splitext(path)[1], prefix=".kernels-")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def _save_grid(panels: list[tuple[str, np.ndarray]], path: str) -> None:
    """Saves ``(title, uint8 image)`` panels, four to a row, each titled, as one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (title, picture) in zip(axes.flat, panels):
        # nearest: a small image (an 8x8 digit) shows its pixels instead of a smear.
        axis.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axis.set_title(title, fontsize=11)
    figure.tight_layout()
    _write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100))
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from jaxvision._suggest import unknown_name_error
    from jaxvision.kernels import KERNELS

    if args.kernel is not None and args.kernel not in KERNELS:
        raise unknown_name_error("kernel", args.kernel, KERNELS, hint="Pass one of them to --kernel, or --all for every kernel.")
    stem = os.path.splitext(os.path.basename(args.image))[0]
    output = args.output or os.path.join("runs", "kernels", f"{stem}_{'all' if args.all else args.kernel}.png")
    # Everything that can fail on the user's input fails here, before anything is computed or written.
    _check_output_format(output, grid=args.all)
    pixels = _read_image(args.image)
    description = f"{args.image} ({pixels.shape[1]}x{pixels.shape[0]} {'grayscale' if pixels.ndim == 2 else 'RGB'})"

    names = list(KERNELS) if args.all else [args.kernel]
    panels = [("original", pixels.astype(np.uint8))]
    for name in names:
        filtered = filter_image(pixels, KERNELS[name])
        # The slides clip too (an edge response of 657 shows as 255): a PNG holds 0-255.
        panels.append((name, np.clip(np.rint(filtered), 0, 255).astype(np.uint8)))
        print(f"{name:>8}: values {filtered.min():.0f}..{filtered.max():.0f}, clipped to 0-255")
    if args.all:
        _save_grid(panels, output)
    else:
        from PIL import Image

        _write_atomically(output, lambda temporary: Image.fromarray(panels[1][1]).save(temporary))
    print(f"{', '.join(names) if not args.all else f'all {len(names)} kernels'} on {description} -> {output}")
    return 0
