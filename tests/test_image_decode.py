"""resize-crop is torchvision's evaluation transform: Resize(round(S * 256 / 224)) of the shorter side (the
longer one truncated, int(short * long / short)), then CenterCrop(S) with rounded offsets."""

import numpy as np
import pytest
from PIL import Image

from jaxvision.image_decode import decode_image, resize_image


def _torchvision_eval(image: Image.Image, size: int) -> Image.Image:
    # Written from torchvision.transforms.functional.resize / center_crop's documented arithmetic.
    width, height = image.size
    short = int(round(size * 256 / 224))
    if width <= height:
        new_width, new_height = short, int(short * height / width)
    else:
        new_width, new_height = int(short * width / height), short
    resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    top, left = int(round((new_height - size) / 2.0)), int(round((new_width - size) / 2.0))
    return resized.crop((left, top, left + size, top + size))


@pytest.mark.parametrize("width,height,size", [(500, 375, 224), (375, 500, 224), (224, 224, 224), (97, 64, 32)])
def test_resize_crop_matches_torchvisions_evaluation_transform(width, height, size):
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    ours = resize_image(image, (size, size), "resize-crop")
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(_torchvision_eval(image, size)))


def test_resize_crop_differs_from_center_crop_and_decodes_files(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    cropped = decode_image(str(tmp_path / "photo.png"), image_size=(224, 224), resize="resize-crop")
    centred = decode_image(str(tmp_path / "photo.png"), image_size=(224, 224), resize="center-crop")
    assert cropped.shape == centred.shape == (224, 224, 3)
    assert not np.array_equal(cropped, centred)
