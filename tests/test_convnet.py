"""The small all-convolutional ``convnet``: its parameters counted by hand, any input size, a pooled head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import get_model


def test_parameter_count_by_hand():
    model = get_model("convnet", num_classes=10, kernels="reference")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    conv = lambda cin, cout: 9 * cin * cout  # noqa: E731  3x3, no bias (batch norm follows)
    bn = lambda c: 2 * c  # noqa: E731  scale and bias
    expected = (conv(3, 16) + bn(16) + 2 * (conv(16, 16) + bn(16)) + conv(16, 32) + conv(32, 32) + 2 * bn(32)
                + conv(32, 64) + conv(64, 64) + 2 * bn(64) + 64 * 10 + 10)
    assert count == expected == 75290
    assert set(variables["params"]) == {"stem_conv", "stem_bn", "stage1_conv1", "stage1_bn1", "stage1_conv2", "stage1_bn2",
                                        "stage2_conv1", "stage2_bn1", "stage2_conv2", "stage2_bn2", "stage3_conv1",
                                        "stage3_bn1", "stage3_conv2", "stage3_bn2", "head"}


@pytest.mark.parametrize("size", [32, 64, 48])
def test_any_input_size_gives_the_same_parameters(size):
    model = get_model("convnet", num_classes=3, kernels="reference")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    images = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    logits = model.apply(variables, images, train=False)
    assert logits.shape == (2, 3)
    # Nothing is flattened, so one set of parameters serves every size; in eval mode an example's logits do
    # not depend on the rest of its batch.
    by_hand = model.apply(variables, images[:1], train=False)
    np.testing.assert_allclose(logits[:1], by_hand, rtol=1e-5, atol=1e-6)
