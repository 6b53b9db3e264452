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


def test_augment_preview_rejects_unknown_ops():
    args = parse("--augment", "rotat:10", "--num-images", "2", "--views", "1")
    with pytest.raises(ValueError, match="Did you mean 'rotate'"):
        args.func(args)
