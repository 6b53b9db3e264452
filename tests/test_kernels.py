"""Correlation, convolution, pooling and the named kernels: the seed lectures' worked numbers, hand
computations and scipy.signal as the oracles; then the ``jaxvision kernels`` command."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from PIL import Image

from jaxvision import kernels
from jaxvision.cli.main import main

SEED_IMAGE = np.array([[12, 3, 19], [25, 10, 1], [9, 7, 17]])
SEED_KERNEL = np.array([[1, 2], [3, 4]])
SEED_POOL_INPUT = np.array([[2, 2, 7, 3], [9, 4, 6, 1], [8, 5, 2, 4], [3, 1, 2, 6]])


def test_seed_3x3_image_correlated_with_1_2_3_4_gives_133_75_100_101():
    # Seed slides: 12*1 + 3*2 + 25*3 + 10*4 = 133, 3*1 + 19*2 + 10*3 + 1*4 = 75,
    # 25*1 + 10*2 + 9*3 + 7*4 = 100, 10*1 + 1*2 + 7*3 + 17*4 = 101.
    np.testing.assert_array_equal(kernels.correlate2d(SEED_IMAGE, SEED_KERNEL), [[133, 75], [100, 101]])


def test_convolution_flips_the_kernel_by_hand():
    # Flipped, 1 2 / 3 4 becomes 4 3 / 2 1: 12*4 + 3*3 + 25*2 + 10*1 = 117, 3*4 + 19*3 + 10*2 + 1*1 = 90,
    # 25*4 + 10*3 + 9*2 + 7*1 = 155, 10*4 + 1*3 + 7*2 + 17*1 = 74.
    np.testing.assert_array_equal(kernels.convolve2d(SEED_IMAGE, SEED_KERNEL), [[117, 90], [155, 74]])


def test_gaussian_1_2_1_kernel_gives_198_at_position_1_1():
    # The issue quotes 198 at (1, 1) for the slides' 6x6 patch but not the patch itself, so this patch is
    # made up to give 198 there (output (1, 1) is the window of input rows 1-3, columns 1-3):
    # 1*(10 + 10 + 10 + 10) + 2*(12 + 12 + 15 + 12) + 4*14 = 40 + 102 + 56 = 198.
    patch = np.array(
        [
            [9, 9, 9, 9, 9, 9],
            [9, 10, 12, 10, 9, 9],
            [9, 12, 14, 15, 9, 9],
            [9, 10, 12, 10, 9, 9],
            [9, 9, 9, 9, 9, 9],
            [9, 9, 9, 9, 9, 9],
        ]
    )
    unnormalised = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    output = kernels.correlate2d(patch, unnormalised)
    assert output.shape == (4, 4)
    assert output[1, 1] == 198
    np.testing.assert_array_equal(output, scipy.signal.correlate2d(patch, unnormalised, mode="valid"))
    # The named kernel is the same weights over 16: a weighted mean, 198 / 16 = 12.375.
    assert kernels.correlate2d(patch, kernels.KERNELS["gaussian"])[1, 1] == pytest.approx(198 / 16)


def test_seed_2x2_max_pool_stride_2_gives_9_7_8_6():
    # Seed slides: max(2, 2, 9, 4) = 9, max(7, 3, 6, 1) = 7, max(8, 5, 3, 1) = 8, max(2, 4, 2, 6) = 6.
    pooled = kernels.max_pool2d(SEED_POOL_INPUT, 2, stride=2)
    np.testing.assert_array_equal(pooled, [[9, 7], [8, 6]])
    assert pooled.dtype == jnp.int32  # the max of integers is one of them


def test_max_pool_stride_defaults_to_the_window_and_overlapping_windows_by_hand():
    np.testing.assert_array_equal(kernels.max_pool2d(SEED_POOL_INPUT, 2), [[9, 7], [8, 6]])
    np.testing.assert_array_equal(kernels.max_pool2d(SEED_POOL_INPUT, 2, stride=1), [[9, 7, 7], [9, 6, 6], [8, 5, 6]])


def test_avg_pool_by_hand():
    # (2 + 2 + 9 + 4) / 4, (7 + 3 + 6 + 1) / 4, (8 + 5 + 3 + 1) / 4, (2 + 4 + 2 + 6) / 4.
    pooled = kernels.avg_pool2d(SEED_POOL_INPUT, 2)
    np.testing.assert_allclose(pooled, [[4.25, 4.25], [4.25, 3.5]])
    assert pooled.dtype == jnp.float32


def test_max_pool_gradient_goes_to_each_window_maximum():
    gradient = jax.grad(lambda x: kernels.max_pool2d(x, 2).sum())(jnp.asarray(SEED_POOL_INPUT, jnp.float32))
    expected = np.zeros((4, 4))
    expected[1, 0] = expected[0, 2] = expected[2, 0] = expected[3, 3] = 1  # where 9, 7, 8 and 6 sit
    np.testing.assert_array_equal(gradient, expected)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 0), (1, 1), (2, 2), (3, 1)])
def test_correlate_and_convolve_match_scipy_with_stride_and_padding(stride, padding):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(9, 11)).astype(np.float32)
    kernel = rng.normal(size=(3, 4)).astype(np.float32)
    padded = np.pad(image, padding)
    for ours, theirs in ((kernels.correlate2d, scipy.signal.correlate2d), (kernels.convolve2d, scipy.signal.convolve2d)):
        expected = theirs(padded, kernel, mode="valid")[::stride, ::stride]
        np.testing.assert_allclose(ours(image, kernel, stride=stride, padding=padding), expected, rtol=1e-5, atol=1e-5)


def test_symmetric_kernels_correlate_and_convolve_alike_and_sobel_flips_sign():
    image = np.random.default_rng(1).uniform(0, 255, size=(8, 8)).astype(np.float32)
    for name in ("edge", "box_blur", "sharpen", "gaussian"):
        np.testing.assert_allclose(kernels.convolve2d(image, kernels.KERNELS[name]), kernels.correlate2d(image, kernels.KERNELS[name]), rtol=1e-5, atol=1e-3)
    # Sobel is antisymmetric: flipping it negates it.
    np.testing.assert_allclose(kernels.convolve2d(image, kernels.KERNELS["sobel_x"]), -kernels.correlate2d(image, kernels.KERNELS["sobel_x"]), rtol=1e-5, atol=1e-3)


def test_output_size_is_w_minus_f_plus_2p_over_s_plus_1():
    # (32 - 5) / 1 + 1 = 28; padding (5 - 1) / 2 = 2 keeps 32; (7 - 3) / 2 + 1 = 3.
    assert kernels.correlate2d(np.zeros((32, 32, 3)), np.ones((5, 5))).shape == (28, 28, 3)
    assert kernels.correlate2d(np.zeros((32, 32, 3)), np.ones((5, 5)), padding=2).shape == (32, 32, 3)
    assert kernels.correlate2d(np.zeros((7, 7)), np.ones((3, 3)), stride=2).shape == (3, 3)


def test_ranks_are_kept_and_channels_filtered_independently():
    rng = np.random.default_rng(2)
    batch = rng.uniform(size=(2, 6, 7, 3)).astype(np.float32)
    kernel = kernels.KERNELS["sobel_y"]
    for function in (lambda x: kernels.correlate2d(x, kernel), lambda x: kernels.max_pool2d(x, 2), lambda x: kernels.avg_pool2d(x, 3, stride=1)):
        batched = function(batch)
        assert batched.ndim == 4
        one_image = function(batch[1])
        assert one_image.ndim == 3
        np.testing.assert_allclose(one_image, batched[1], rtol=1e-6)
        one_channel = function(batch[1, :, :, 2])
        assert one_channel.ndim == 2
        np.testing.assert_allclose(one_channel, batched[1, :, :, 2], rtol=1e-6)


def test_jit_and_vmap_give_the_eager_result():
    images = np.random.default_rng(3).uniform(size=(4, 8, 8)).astype(np.float32)
    kernel = kernels.KERNELS["emboss"]
    eager = kernels.correlate2d(images[..., None], kernel)[..., 0]
    np.testing.assert_allclose(jax.jit(lambda x: kernels.correlate2d(x, kernel))(images[0]), eager[0], rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda x: kernels.correlate2d(x, kernel))(images), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda x: kernels.max_pool2d(x, 2))(images), kernels.max_pool2d(images[..., None], 2)[..., 0])


def test_integer_image_with_float_kernel_under_strict_dtype_promotion():
    with jax.numpy_dtype_promotion("strict"):
        output = kernels.correlate2d(jnp.asarray(SEED_IMAGE, jnp.int32), kernels.KERNELS["box_blur"])
    assert output.dtype == jnp.float32
    assert output[0, 0] == pytest.approx(SEED_IMAGE.sum() / 9)


def test_named_kernels_as_the_issue_lists_them():
    k = kernels.KERNELS
    assert set(k) == {"edge", "box_blur", "sharpen", "gaussian", "sobel_x", "sobel_y", "emboss"}
    np.testing.assert_array_equal(k["edge"], [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    np.testing.assert_allclose(k["box_blur"], np.full((3, 3), 1 / 9))
    np.testing.assert_array_equal(k["sharpen"], [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_allclose(k["gaussian"] * 16, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(k["sobel_x"], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(k["sobel_y"], k["sobel_x"].T)
    # Flat regions: blurs, sharpen and emboss keep them (weights sum to 1), edge and Sobel zero them.
    flat = np.full((5, 5), 7.0)
    for name, level in (("edge", 0), ("box_blur", 7), ("sharpen", 7), ("gaussian", 7), ("sobel_x", 0), ("sobel_y", 0), ("emboss", 7)):
        np.testing.assert_allclose(kernels.correlate2d(flat, k[name]), np.full((3, 3), level), atol=1e-5)
    with pytest.raises(ValueError):
        k["edge"][1, 1] = 0  # read-only, so no caller can change it for every other


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: kernels.correlate2d(np.zeros(5), np.ones((3, 3))), r"expected \[height, width\]"),
        (lambda: kernels.correlate2d(np.zeros((5, 5)), np.ones(3)), r"expected \[kernel_height, kernel_width\]"),
        (lambda: kernels.correlate2d(np.zeros((2, 2)), np.ones((3, 3))), "does not fit"),
        (lambda: kernels.correlate2d(np.zeros((5, 5)), np.ones((3, 3)), stride=0), "Invalid stride=0"),
        (lambda: kernels.correlate2d(np.zeros((5, 5)), np.ones((3, 3)), padding=-1), "Invalid padding=-1"),
        (lambda: kernels.max_pool2d(np.zeros((5, 5)), 0), "Invalid size=0"),
        (lambda: kernels.avg_pool2d(np.zeros((1, 5)), 2), "does not fit"),
    ],
)
def test_bad_arguments_say_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# The command line.


def run_cli(argv):
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture
def dot_image(tmp_path):
    """A 7x7 black grayscale PNG with one pixel of 100 in the middle."""
    pixels = np.zeros((7, 7), np.uint8)
    pixels[3, 3] = 100
    path = tmp_path / "dot.png"
    Image.fromarray(pixels).save(path)
    return path


def test_cli_edge_kernel_writes_the_clipped_filtered_image(dot_image, tmp_path, capsys):
    output = tmp_path / "out" / "edge.png"
    assert run_cli(["kernels", str(dot_image), "--kernel", "edge", "--output", str(output)]) == 0
    written = np.asarray(Image.open(output))
    assert written.shape == (7, 7) and written.dtype == np.uint8
    # 8 * 100 = 800 at the dot clips to 255; its neighbours' -100 clip to 0; everything else is 0.
    expected = np.zeros((7, 7), np.uint8)
    expected[3, 3] = 255
    np.testing.assert_array_equal(written, expected)
    assert "values -100..800, clipped to 0-255" in capsys.readouterr().out


def test_cli_keeps_rgb_and_blurs_each_channel(tmp_path):
    pixels = np.zeros((6, 6, 3), np.uint8)
    pixels[..., 0] = 90  # red everywhere: a box blur with replicated edges keeps it exactly
    pixels[2, 2, 2] = 180  # one blue pixel: its 3x3 neighbourhood gets 180 / 9 = 20
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    assert run_cli(["kernels", str(tmp_path / "rgb.png"), "--kernel", "box_blur", "--output", str(tmp_path / "blur.png")]) == 0
    written = np.asarray(Image.open(tmp_path / "blur.png"))
    assert written.shape == (6, 6, 3)
    np.testing.assert_array_equal(written[..., 0], 90)
    np.testing.assert_array_equal(written[1:4, 1:4, 2], 20)
    assert written[..., 2].sum() == 9 * 20


def test_cli_all_writes_one_grid(dot_image, tmp_path, capsys):
    output = tmp_path / "grid.png"
    assert run_cli(["kernels", str(dot_image), "--all", "--output", str(output)]) == 0
    grid = np.asarray(Image.open(output))
    assert grid.shape[0] > 100 and grid.shape[1] > 400  # 2 rows x 4 panels
    out = capsys.readouterr().out
    assert all(name in out for name in kernels.KERNELS) and "all 7 kernels" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.png", "--kernel", "edge"], "Image file 'missing.png' not found"),
        (["{image}", "--kernel", "egde"], "Unknown kernel 'egde'. Known: box_blur, edge"),
        (["{image}", "--kernel", "egde"], "Did you mean 'edge'?"),
        (["{image}", "--kernel", "edge", "--output", "{tmp}/out.nosuchformat"], "names no image format"),
        (["{text}", "--kernel", "edge"], "as an image"),
        (["{image}"], "one of the arguments --kernel --all is required"),
        (["{image}", "--kernel", "edge", "--all"], "not allowed with argument"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(argv, message, dot_image, tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)  # the default output would go under runs/ here
    before = set(os.listdir(tmp_path))
    argv = [a.format(image=dot_image, tmp=tmp_path, text=tmp_path / "notes.txt") for a in argv]
    assert run_cli(["kernels", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert set(os.listdir(tmp_path)) == before
