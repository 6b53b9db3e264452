"""A TFDS builder for ``shapes``: generated scenes of circles, squares and triangles, for every vision task.

Each image holds one to three flat-coloured shapes of random size, position and rotation on a textured
background (smooth noise or stripes), with targets for classification (the largest shape's class), binary
classification (is there a circle?), regression (the largest shape's area fraction, the number of shapes),
detection (a box and class per shape) and segmentation (a per-pixel class mask). It is drawn with NumPy, needs
no network, and is the same on every machine: example ``i`` of a split comes from
``np.random.default_rng((seed, split_id, i))``.

Shapes are drawn in order, later ones over earlier ones; every target is computed from the *visible* pixels,
and a shape that ends up fully hidden is dropped. Pixels are tested at their centres with no anti-aliasing,
so the mask is exact and its class always matches the colour drawn there.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ("circle", "square", "triangle")
# Mask values: 0 is background, then class index + 1.
BACKGROUND = 0
SPLIT_IDS = {"train": 0, "test": 1}
MAX_SHAPES = 3
# Shape sizes are drawn as the radius of the circle of equal area, as a fraction of the image side, so that
# area alone does not give the class away.
MIN_SCALE, MAX_SCALE = 0.10, 0.22
# Circumradius / equal-area radius: a square of area pi s^2 has half-diagonal s sqrt(pi / 2); an equilateral
# triangle of area pi s^2 has circumradius s sqrt(4 pi / (3 sqrt 3)).
_CIRCUMRADIUS = {
    "circle": 1.0,
    "square": float(np.sqrt(np.pi / 2.0)),
    "triangle": float(np.sqrt(4.0 * np.pi / (3.0 * np.sqrt(3.0)))),
}
_VERTICES = {"square": 4, "triangle": 3}
# Shapes must stand out from the background and from each other (Euclidean RGB distance), or a
# segmentation target would ask for edges that are not in the picture.
MIN_COLOUR_DISTANCE = 90.0
_COLOUR_TRIES = 64


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape of a scene, in pixel units (x to the right, y down, pixel (r, c) centred at (r + 0.5, c + 0.5)).

    Attributes:
      kind: "circle", "square" or "triangle".
      center_y: centre row coordinate.
      center_x: centre column coordinate.
      radius: circumradius (the circle's radius; the polygon's centre-to-vertex distance).
      angle: rotation of the first vertex in radians (ignored for circles).
      colour: RGB, 0-255.
    """

    kind: str
    center_y: float
    center_x: float
    radius: float
    angle: float
    colour: tuple[int, int, int]

    @property
    def label(self) -> int:
        """Index of ``kind`` in CLASS_NAMES."""
        return CLASS_NAMES.index(self.kind)

    def vertices(self) -> np.ndarray:
        """The polygon's corners as [n, 2] (x, y), in order of increasing angle; a circle has none."""
        if self.kind == "circle":
            return np.zeros((0, 2))
        angles = self.angle + 2.0 * np.pi * np.arange(_VERTICES[self.kind]) / _VERTICES[self.kind]
        return np.stack([self.center_x + self.radius * np.cos(angles), self.center_y + self.radius * np.sin(angles)], 1)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A background and the shapes drawn on it, in drawing order."""

    background: np.ndarray  # [H, W, 3] uint8
    shapes: tuple[Shape, ...]


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    # Bilinear interpolation of a [k, k, C] grid to [size, size, C], as two small matrix products.
    knots = np.linspace(0.0, size, grid.shape[0])
    weights = np.stack([np.interp(np.arange(size) + 0.5, knots, np.eye(grid.shape[0])[j]) for j in range(grid.shape[0])], 1)
    return (weights @ grid.transpose(2, 0, 1) @ weights.T).transpose(1, 2, 0)


def sample_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured background: smooth random noise or stripes, around one random base colour.

    Args:
      rng: the example's generator (advanced by this call).
      image_size: side of the square image in pixels.

    Returns:
      [image_size, image_size, 3] uint8.
    """
    base = rng.uniform(0.0, 255.0, size=3)
    if rng.integers(2) == 0:
        cells = int(rng.integers(3, 9))
        texture = 35.0 * _upsample(rng.normal(size=(cells, cells, 3)), image_size)
    else:
        theta, period = rng.uniform(0.0, np.pi), rng.uniform(4.0, 16.0)
        delta = rng.uniform(-50.0, 50.0, size=3)
        yy, xx = np.mgrid[0:image_size, 0:image_size] + 0.5
        wave = 0.5 + 0.5 * np.sin(2.0 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        texture = wave[..., None] * delta
    return np.clip(np.round(base + texture), 0, 255).astype(np.uint8)


def _sample_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> tuple[int, int, int]:
    # Rejection sampling from a fixed number of draws keeps the example deterministic; the last draw is
    # kept if none is far enough (rare: the RGB cube is large next to MIN_COLOUR_DISTANCE).
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3)
        if all(np.linalg.norm(colour - other) >= MIN_COLOUR_DISTANCE for other in avoid):
            break
    return tuple(int(c) for c in colour)


def sample_scene(rng: np.random.Generator, image_size: int) -> Scene:
    """Draws a background and one to three shapes, each wholly inside the image.

    Args:
      rng: the example's generator, e.g. ``np.random.default_rng((seed, split_id, index))``.
      image_size: side of the square image in pixels.

    Returns:
      The scene; render it with ``render_scene``.
    """
    background = sample_background(rng, image_size)
    avoid = [background.reshape(-1, 3).mean(0)]
    shapes = []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        kind = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
        radius = rng.uniform(MIN_SCALE, MAX_SCALE) * image_size * _CIRCUMRADIUS[kind]
        center_y, center_x = rng.uniform(radius, image_size - radius, size=2)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        colour = _sample_colour(rng, avoid)
        avoid.append(np.asarray(colour, np.float64))
        shapes.append(Shape(kind, float(center_y), float(center_x), float(radius), float(angle), colour))
    return Scene(background, tuple(shapes))


def shape_mask(shape: Shape, image_size: int) -> np.ndarray:
    """[image_size, image_size] bool: the pixels whose centres lie inside ``shape`` (edges included)."""
    yy, xx = np.mgrid[0:image_size, 0:image_size] + 0.5
    if shape.kind == "circle":
        return (yy - shape.center_y) ** 2 + (xx - shape.center_x) ** 2 <= shape.radius**2
    corners = shape.vertices()
    start, end = corners, np.roll(corners, -1, axis=0)
    # Inside a convex polygon whose corners run in one direction, every edge's cross product is >= 0.
    cross = (end[:, 0, None, None] - start[:, 0, None, None]) * (yy - start[:, 1, None, None]) - (
        end[:, 1, None, None] - start[:, 1, None, None]
    ) * (xx - start[:, 0, None, None])
    return np.all(cross >= 0.0, axis=0)


def render_scene(scene: Scene) -> dict:
    """The example's features: the picture and every target, from the visible pixels of each shape.

    Args:
      scene: from ``sample_scene``.

    Returns:
      A dict of TFDS features: image [H, W, 3] uint8; mask [H, W, 1] uint8 (0 background, class + 1);
      label, the class of the shape with most visible pixels (the first drawn on a tie); has_circle 0/1;
      area_fraction, that shape's visible pixels / (H * W), float32; count, the visible shapes; objects,
      {bbox [count, 4] float32 (ymin, xmin, ymax, xmax) in [0, 1], the tight bounds of the shape's visible
      pixels' squares; label [count]} in drawing order.
    """
    image = scene.background.copy()
    size = image.shape[0]
    # Which shape (by drawing order, -1 none) owns each pixel once all are drawn.
    owner = np.full((size, size), -1, np.int64)
    for index, shape in enumerate(scene.shapes):
        inside = shape_mask(shape, size)
        image[inside] = shape.colour
        owner[inside] = index
    visible = [index for index in range(len(scene.shapes)) if (owner == index).any()]
    areas = np.array([(owner == index).sum() for index in visible])
    largest = scene.shapes[visible[int(np.argmax(areas))]]
    mask = np.zeros((size, size), np.uint8)
    boxes = []
    for index in visible:
        rows, cols = np.nonzero(owner == index)
        mask[owner == index] = scene.shapes[index].label + 1
        boxes.append([rows.min() / size, cols.min() / size, (rows.max() + 1) / size, (cols.max() + 1) / size])
    labels = [scene.shapes[index].label for index in visible]
    return {
        "image": image,
        "mask": mask[..., None],
        "label": largest.label,
        "has_circle": int(CLASS_NAMES.index("circle") in labels),
        "area_fraction": np.float32(areas.max() / (size * size)),
        "count": len(visible),
        "objects": {"bbox": np.asarray(boxes, np.float32), "label": np.asarray(labels, np.int64)},
    }


def generate_example(seed: int, split: str, index: int, image_size: int) -> dict:
    """Example ``index`` of ``split`` ("train" or "test"): ``render_scene`` of its seeded scene."""
    rng = np.random.default_rng((seed, SPLIT_IDS[split], index))
    return render_scene(sample_scene(rng, image_size))


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    """Image side and split sizes of one ``shapes`` variant."""

    image_size: int = 64
    num_train: int = 8000
    num_test: int = 1000
    seed: int = 0


class Shapes(tfds.core.GeneratorBasedBuilder):
    """Generated circles, squares and triangles with class, binary, regression, box and mask targets."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One to three shapes on noise or stripes; 64x64 and small 32x32 configs."}
    BUILDER_CONFIGS = [
        ShapesConfig(name="64", description="64x64 RGB, 8,000 train / 1,000 test."),
        ShapesConfig(name="small", description="32x32 RGB, 800 train / 200 test, for tests.", image_size=32, num_train=800, num_test=200),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[1],
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, 3)),
                    "mask": tfds.features.Image(shape=(size, size, 1)),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                    "has_circle": tfds.features.ClassLabel(num_classes=2),
                    "area_fraction": tfds.features.Scalar(dtype=np.float32),
                    "count": tfds.features.Scalar(dtype=np.int64),
                    "objects": tfds.features.Sequence(
                        {"bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(names=CLASS_NAMES)}
                    ),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: every example is drawn from its seed.
        config = self.builder_config
        return {"train": self._generate_examples("train", config.num_train), "test": self._generate_examples("test", config.num_test)}

    def _generate_examples(self, split: str, num_examples: int):
        config = self.builder_config
        for index in range(num_examples):
            yield index, generate_example(config.seed, split, index, config.image_size)
