"""Decoding one image file to the uint8 array jaxvision trains on: Pillow, any mode, EXIF orientation,
resized by a named mode. No TensorFlow: ``jaxvision predict`` and ``visualize`` read files through this
module without paying for ``jaxvision.data``'s imports, and ``jaxvision.data.image_folder`` decodes with it.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

# A file counts as an image by its extension or, failing that, by its first bytes.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_MAGIC_BYTES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
RESIZE_MODES = ("stretch", "center-crop", "resize-crop", "pad")
# torchvision's evaluation transform resizes to 256 and crops 224: "resize-crop" keeps that ratio at any size.
RESIZE_CROP_RATIO = 256 / 224
# Pillow modes whose pixels are one grey value (with or without alpha).
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
# EXIF orientations 5-8 turn the image a quarter, so height and width swap.
_QUARTER_TURNS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


def is_image_file(path: str) -> bool:
    """True for a file named .png/.jpg/.jpeg/.bmp/.gif (any case), or one whose first bytes are such an image's."""
    name = os.path.basename(path)
    if name.startswith("."):  # .DS_Store, and macOS's "._photo.jpg" resource forks, which are not images
        return False
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_MAGIC_BYTES)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1


def _grey_palette(image: Image.Image) -> bool:
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def image_header(path: str) -> tuple[int, int, bool]:
    """(height, width, grayscale-like) of an image, as it will be decoded, from its header only.

    Height and width are after EXIF orientation. Grayscale-like: a grey mode (1, L, LA, I, I;16, F) or a
    palette of grey entries only; an RGB file whose pixels happen to be grey is not.
    """
    with Image.open(path) as image:
        width, height = image.size
        if _orientation(image) in _QUARTER_TURNS:
            width, height = height, width
        grey = image.mode in _GREY_MODES or (image.mode in ("P", "PA") and _grey_palette(image))
    return height, width, grey


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as 8-bit "L" (channels 1) or "RGB" (channels 3); alpha composited on black."""
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, np.float64)
        image = Image.fromarray(np.round(np.clip(pixels, 0, 65535) * (255 / 65535)).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.round(np.clip(np.asarray(image), 0, 255)).astype(np.uint8), "L")
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        # Transparent pixels carry arbitrary colours; compositing on black shows what a viewer shows on black,
        # and matches the zeros that padding adds.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _resampled_size(height: int, width: int, size: tuple[int, int], resize: str) -> tuple[int, int]:
    """The (height, width) an image is resampled to before cropping or padding to ``size``."""
    target_height, target_width = size
    if resize == "stretch":
        return target_height, target_width
    if resize == "center-crop":
        # Cover the target (the shorter side, relative to the target, fits), as torchvision's eval transform.
        scaled = _scaled_size(height, width, max(target_height / height, target_width / width))
        return max(scaled[0], target_height), max(scaled[1], target_width)
    if resize == "resize-crop":
        # torchvision's Resize(short) rounds the shorter side and truncates the longer one: int(short * long / short).
        scale = max(target_height / height, target_width / width) * RESIZE_CROP_RATIO
        if height <= width:
            new_height = max(1, int(round(height * scale)))
            new_width = int(new_height * width / height)
        else:
            new_width = max(1, int(round(width * scale)))
            new_height = int(new_width * height / width)
        return max(new_height, target_height), max(new_width, target_width)
    scaled = _scaled_size(height, width, min(target_height / height, target_width / width))
    return min(scaled[0], target_height), min(scaled[1], target_width)


def resize_image(image: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    """``image`` at ``size`` (height, width).

    Args:
      image: an "L" or "RGB" Pillow image.
      size: (height, width) of the result.
      resize: "stretch" (ignore the aspect ratio), "center-crop" (scale to cover, crop the centre),
        "resize-crop" (torchvision's evaluation transform, Resize(256) + CenterCrop(224), at any size: scale
        to cover ``size * 256 / 224``, crop the centre), or "pad" (scale to fit, letterbox with zeros, centred).

    Returns:
      The resized image, same mode; bilinear resampling, antialiased when shrinking (Pillow's).
    """
    target_height, target_width = size
    height, width = _resampled_size(image.height, image.width, size, resize)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    if resize in ("center-crop", "resize-crop"):
        # torchvision's CenterCrop rounds the offsets the same way.
        top, left = int(round((height - target_height) / 2)), int(round((width - target_width) / 2))
        image = image.crop((left, top, left + target_width, top + target_height))
    elif resize == "pad":
        canvas = Image.new(image.mode, (target_width, target_height), 0)
        canvas.paste(image, ((target_width - width) // 2, (target_height - height) // 2))
        image = canvas
    return image


def decode_image(path: str, *, image_size: tuple[int, int], resize: str = "stretch", channels: int = 3) -> np.ndarray:
    """Decodes one image file to the pipeline's uint8 array.

    Args:
      path: a PNG, JPEG, BMP or GIF (first frame) file, in any mode.
      image_size: (height, width) of the result.
      resize: "stretch", "center-crop", "resize-crop" or "pad" (see ``resize_image``).
      channels: 1 (grey, ITU-R 601-2 luma) or 3 (RGB).

    Returns:
      [height, width, channels] uint8, EXIF orientation applied.

    Raises:
      Whatever Pillow raises for a file it cannot read (OSError, SyntaxError, ValueError, ...).
    """
    with Image.open(path) as image:
        image.seek(0)  # the first frame of an animated GIF
        orientation = _orientation(image)
        if image.format == "JPEG":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for almost nothing; ask for no less than the resampled
            # size (in the file's own orientation), so quality is kept and large photos decode many times faster.
            height, width = image.height, image.width
            if orientation in _QUARTER_TURNS:
                height, width = width, height
            needed = _resampled_size(height, width, tuple(image_size), resize)
            image.draft(None, (needed[1], needed[0]) if orientation not in _QUARTER_TURNS else needed)
        image.load()
        image = ImageOps.exif_transpose(image)
        image = resize_image(_to_mode(image, channels), tuple(image_size), resize)
    array = np.asarray(image, np.uint8)
    return array[:, :, None] if array.ndim == 2 else array
