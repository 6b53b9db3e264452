"""``jaxvision augment-preview`` writes a PNG grid; bad specs fail with one line."""

import argparse

import pytest

from jaxvision.cli import augment_preview


def parse(*argv):
    parser = argparse.ArgumentParser()
    augment_preview.add_parser(parser.add_subparsers())
    return parser.parse_args(["augment-preview", *argv])


def test_augment_preview_writes_a_png_grid(tmp_path):
    output = tmp_path / "grid.png"
    args = parse("--augment", "flip,rotate:20,jitter:0.2,cutmix", "--num-images", "3", "--views", "2", "--output", str(output))
    assert args.func(args) == 0
    with open(output, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_augment_preview_reads_a_flat_image_folder(tmp_path):
    import numpy as np
    from PIL import Image

    for label, name in enumerate(["cats", "dogs"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.full((12, 10, 3), 40 + 150 * label + i, np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    output = tmp_path / "grid.png"
    args = parse("--dataset", str(tmp_path / "photos"), "--augment", "flip", "--num-images", "3", "--views", "1",
                 "--output", str(output))
    images, labels, num_classes = augment_preview._load_images(str(tmp_path / "photos"), 3, None)
    assert images.shape == (3, 12, 10, 3) and num_classes == 2
    # The originals come back in [0, 1] pixel units: one of the 12 flat grey levels of the folder.
    levels = {(40 + 150 * label + i) / 255 for label in (0, 1) for i in range(6)}
    assert all(min(abs(float(image[0, 0, 0]) - level) for level in levels) < 1e-5 for image in images)
    assert args.func(args) == 0
    with open(output, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_augment_preview_rejects_unknown_ops():
    args = parse("--augment", "rotat:10", "--num-images", "2", "--views", "1")
    with pytest.raises(ValueError, match="Did you mean 'rotate'"):
        args.func(args)
