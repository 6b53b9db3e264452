"""Pipeline specs: parsing and errors, magnitude 0, fusion, per-example draws, and the train step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import Batch, create_train_state, cross_entropy, get_model, make_optimizer, make_train_step
from jaxvision.augment import affine, geometric, parse_augment_spec
from jaxvision.train import split_step_key


def batch(size=8, shape=(8, 8, 3), seed=0):
    images = jax.random.uniform(jax.random.key(seed), (size, *shape))
    return Batch.of(images, jnp.arange(size) % 4)


def test_parse_spec_with_defaults_and_canonical_form():
    pipeline = parse_augment_spec("flip, crop:4,rotate:15,shear:10,jitter:0.2,Resized-Crop,fill:reflect")
    assert pipeline.ops == (("flip", 0.5), ("crop", 4.0), ("rotate", 15.0), ("shear", 10.0), ("jitter", 0.2), ("resized_crop", 0.5))
    assert pipeline.fill_mode == "reflect"
    assert parse_augment_spec(pipeline.spec) == pipeline  # hashable and equal: one compiled train step
    assert parse_augment_spec([("rotate", 15), "flip"]).ops == (("rotate", 15.0), ("flip", 0.5))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("flip,rotat:15", "Unknown augmentation 'rotat'. Known: brightness, contrast, crop,"),
        ("flip,rotat:15", "Did you mean 'rotate'?"),
        ("rotate:400", "Invalid magnitude for rotate: 400 (expected 0..180 degrees)."),
        ("rotate:-1", "Invalid magnitude for rotate: -1 (expected 0..180 degrees)."),
        ("rotate:nan", "Invalid magnitude for rotate: nan"),
        ("crop:2.5", "Invalid magnitude for crop: 2.5 (expected an integer 0..64"),
        ("shear:ten", "Invalid magnitude for shear: 'ten'"),
        ("flip,,crop", "Empty item in augmentation spec"),
        ("", "Empty augmentation spec"),
        ("fill:wrap", "Invalid fill mode 'wrap'"),
        ("mixup", "mixup mixes labels, so it needs the number of classes"),
    ],
)
def test_bad_specs_raise_one_line_errors(spec, message):
    with pytest.raises(ValueError) as error:
        parse_augment_spec(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_magnitude_zero_pipeline_is_identity():
    names = "flip,vflip,crop,resized_crop,translate,rotate,shear,stretch,zoom,brightness,contrast,saturation,hue,gamma,grayscale,vignette,jitter,cutout,erase,mixup,cutmix"
    pipeline = parse_augment_spec(",".join(f"{name}:0" for name in names.split(",")), num_classes=4)
    b = batch()
    out = jax.jit(pipeline)(jax.random.key(0), b)
    np.testing.assert_array_equal(out.images, b.images)
    np.testing.assert_array_equal(out.labels, b.labels)  # mixup:0 and cutmix:0 are skipped: labels stay hard


def test_geometric_run_is_fused_into_one_resample():
    pipeline = parse_augment_spec("rotate:30,shear:10,stretch:0.2,translate:0.1,zoom:0.1")
    x = batch().images[0]
    key = jax.random.key(5)
    keys = jax.random.split(key, 5)
    matrix = affine.compose(
        geometric.sample_rotation(keys[0], 8, 8, max_degrees=30),
        geometric.sample_shear(keys[1], 8, 8, max_degrees=10),
        geometric.sample_stretch(keys[2], 8, 8, max_fraction=0.2),
        geometric.sample_translation(keys[3], 8, 8, max_fraction=0.1),
        geometric.sample_zoom(keys[4], 8, 8, max_fraction=0.1),
    )
    fused = jax.jit(pipeline.augment_image)(key, x)
    np.testing.assert_allclose(fused, jax.jit(affine.warp_affine)(x, matrix), atol=1e-6)


def test_crop_in_a_pipeline_equals_pad_and_crop():
    pipeline = parse_augment_spec("crop:2")
    x = batch().images[0]
    key = jax.random.key(3)
    expected = geometric.random_crop(jax.random.split(key, 1)[0], x, padding=2)
    np.testing.assert_array_equal(jax.jit(pipeline.augment_image)(key, x), expected)


def test_photometric_ops_run_in_pixel_units_given_mean_and_std():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    mean_array, std_array = jnp.asarray(mean).reshape(1, 1, 1, 3), jnp.asarray(std).reshape(1, 1, 1, 3)
    pixels = batch().images
    normalised = (pixels - mean_array) / std_array
    key = jax.random.key(0)
    with_stats = parse_augment_spec("hue:0.3,saturation:0.5", mean=mean, std=std)
    raw = parse_augment_spec("hue:0.3,saturation:0.5")
    out = jax.jit(with_stats.augment_images)(key, normalised)
    expected = (jax.jit(raw.augment_images)(key, pixels) - mean_array) / std_array
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_pipeline_draws_differently_per_example_and_reproducibly_per_key():
    pipeline = jax.jit(parse_augment_spec("flip,crop:2,rotate:20,jitter:0.3,cutmix", num_classes=4))
    b = batch()
    same = b.replace(images=jnp.broadcast_to(b.images[:1], b.images.shape))
    out = pipeline(jax.random.key(0), same)
    assert len({np.asarray(x).round(5).tobytes() for x in out.images}) == len(out.images)
    np.testing.assert_array_equal(pipeline(jax.random.key(0), same).images, out.images)
    assert not np.array_equal(pipeline(jax.random.key(1), same).images, out.images)
    np.testing.assert_allclose(out.labels.sum(axis=1), 1.0, atol=1e-6)


def make_state():
    model = get_model("mlp", num_classes=4, hidden_sizes=(16,))
    return create_train_state(model, (8, 8, 3), make_optimizer("sgd", 0.1), jax.random.key(0))


def _pipeline():
    return parse_augment_spec("flip,crop:2,rotate:15,shear:10,jitter:0.2,mixup", num_classes=4, mean=[0.5] * 3, std=[0.25] * 3)


def test_train_step_with_augmentation_compiles_once_and_is_reproducible():
    traces = []

    def counted_cross_entropy(logits, labels):  # runs once per trace of the step that holds it
        traces.append(logits.shape)
        return cross_entropy(logits, labels)

    pipeline = _pipeline()
    step = make_train_step(loss=counted_cross_entropy, augment=pipeline)
    key = jax.random.key(42)
    initial = make_state()
    state, losses = initial, []
    for seed in range(3):
        state, metrics = step(state, batch(seed=seed), key)
        losses.append(float(metrics["loss"]))
    # Replaying from the same state (as a run resumed from a checkpoint does) draws the same
    # augmentations at the same steps; an equal pipeline parsed again builds an equal step, which
    # shares the compiled program.
    again_step = make_train_step(loss=counted_cross_entropy, augment=_pipeline())
    assert again_step == step and hash(again_step) == hash(step)
    again = initial
    for seed in range(3):
        again, metrics = again_step(again, batch(seed=seed), key)
        assert float(metrics["loss"]) == losses[seed]
    chex.assert_trees_all_equal(again.params, state.params)
    assert len(traces) == 1, f"the step was traced {len(traces)} times"
    # The augmentation runs inside the step: without it the same batch has another loss.
    _, plain = make_train_step()(initial, batch(seed=0), key)
    assert float(plain["loss"]) != losses[0]


def test_augmentation_key_comes_from_the_step_key():
    pipeline = parse_augment_spec("rotate:30")
    b = batch()
    key = jax.random.key(1)
    views = [jax.jit(pipeline)(split_step_key(key, jnp.asarray(step))[0], b).images for step in (0, 1)]
    assert not np.array_equal(views[0], views[1])


@pytest.mark.parametrize("package", ["augment", "data"])
def test_augment_and_data_import_the_batch_module_not_the_trainer(package):
    # Module-level imports only: an annotation under TYPE_CHECKING or a call-time import is not a dependency at import.
    import ast
    import pathlib

    import jaxvision

    trainer = {"jaxvision.train", "jaxvision.fit"}
    imports_batch = False
    for path in sorted((pathlib.Path(jaxvision.__file__).parent / package).glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            assert not names & trainer, f"{path.name} imports {sorted(names & trainer)} at module level; import jaxvision.batch"
            imports_batch |= "jaxvision.batch" in names
    assert imports_batch
