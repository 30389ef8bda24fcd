"""airbench94's network: its size, initialisation, whitening filters, pooling and BatchNorm kernels."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.config import check
from jaxrec.models import config_for, count_params, create_model
from jaxrec.models.airbench import Airbench94, dirac_init, patch_covariance, whitening_kernel
from jaxrec.models.norm import MatmulBatchNorm
from jaxrec.models.pooling import max_pool_floor

SMALL_AIRBENCH = (8, 16, 16)


def test_parameter_count_is_the_references():
    """1,971,640 for 10 classes, the frozen whitening filters counted and no BatchNorm scales."""
    model = create_model(check(config_for("airbench94")), 10)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert count_params(shapes["params"]) == 1_971_640
    assert "scale" not in str(jax.tree_util.tree_structure(shapes["params"]))
    assert {k: v.shape for k, v in shapes["params"]["whiten"].items()} == {"kernel": (2, 2, 3, 24), "bias": (24,)}


@pytest.mark.slow
def test_logits_shape_and_scale():
    """[batch, classes] logits, scaled by logit_scale (the head has no bias, so logits scale exactly)."""
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    model = Airbench94(10, widths=SMALL_AIRBENCH)
    variables = model.init(jax.random.key(0), x)
    logits = model.apply(variables, x)
    assert logits.shape == (3, 10)
    unscaled = Airbench94(10, widths=SMALL_AIRBENCH, logit_scale=1.0).apply(variables, x)
    np.testing.assert_allclose(logits * 9, unscaled, rtol=1e-6, atol=1e-7)


def test_dirac_init_passes_the_first_channels_through():
    kernel = dirac_init()(jax.random.key(0), (3, 3, 4, 6))
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(y[..., :4], x, rtol=1e-6)
    assert not np.allclose(y[..., 4:], 0)  # the other filters keep their random start
    bound = 1 / np.sqrt(3 * 3 * 4)  # PyTorch's default: uniform in +-1/sqrt(fan_in)
    assert np.all(np.abs(kernel[..., 4:]) <= bound) and np.std(kernel[..., 4:]) > bound / 3


def test_patch_covariance_is_that_of_every_2x2_patch():
    images = np.random.default_rng(0).normal(size=(3, 5, 6, 2))
    patches = [images[n, y:y + 2, x:x + 2, :].transpose(2, 0, 1).ravel()  # (C, h, w) order
               for n in range(3) for y in range(4) for x in range(5)]
    flat = np.stack(patches)
    np.testing.assert_allclose(patch_covariance(images, chunk=2), flat.T @ flat / len(flat), rtol=1e-12)


def test_whitening_filters_whiten_the_patches():
    """Applied to the images' patches, the first half of the filters gives outputs whose covariance is
    diag(lambda / (lambda + eps)); the second half is their negative; the sign rule holds."""
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 3))
    images = (rng.normal(size=(40, 8, 8, 3)) @ mix).astype(np.float32)  # correlated channels
    kernel = whitening_kernel(images, epsilon=5e-4)
    assert kernel.shape == (2, 2, 3, 24) and kernel.dtype == np.float32
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    out = jax.lax.conv_general_dilated(jnp.asarray(images), jnp.asarray(kernel[..., :12]), (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    flat = np.asarray(out, np.float64).reshape(-1, 12)
    eigenvalues = np.linalg.eigvalsh(patch_covariance(images))[::-1]
    np.testing.assert_allclose(flat.T @ flat / len(flat), np.diag(eigenvalues / (eigenvalues + 5e-4)), atol=2e-4)
    filters = kernel[..., :12].transpose(3, 2, 0, 1).reshape(12, -1)
    assert np.all(filters[np.arange(12), np.argmax(np.abs(filters), axis=1)] > 0)


def test_init_from_data_sets_only_the_whitening_kernel():
    images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    model = Airbench94(10, widths=SMALL_AIRBENCH)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    whitened = model.init_from_data(variables, images)
    np.testing.assert_array_equal(whitened["params"]["whiten"]["kernel"], whitening_kernel(images))
    same = jax.tree_util.tree_map(np.array_equal, {**variables["params"], "whiten": None},
                                  {**whitened["params"], "whiten": None})
    assert all(jax.tree_util.tree_leaves(same))
    unwhitened = Airbench94(10, widths=SMALL_AIRBENCH, whiten=False).init_from_data(variables, images)
    assert unwhitened is variables


@pytest.mark.slow
def test_frozen_whitening_kernel_gets_no_gradient_and_its_bias_does():
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    for frozen in (True, False):
        model = Airbench94(10, widths=SMALL_AIRBENCH, whiten=frozen)
        variables = model.init(jax.random.key(0), x)
        grads = jax.grad(lambda p: jnp.sum(model.apply({**variables, "params": p}, x) ** 2))(variables["params"])
        assert bool(jnp.any(grads["whiten"]["kernel"] != 0)) is not frozen
        assert bool(jnp.any(grads["whiten"]["bias"] != 0))


@pytest.mark.parametrize("shape,k", [((3, 31, 31, 5), 2), *[pytest.param(*case, marks=pytest.mark.slow) for case in (
    ((2, 15, 14, 3), 2), ((2, 3, 3, 4), 3), ((2, 10, 11, 2), 3), ((1, 8, 8, 2), 2))]])
def test_floor_pooling_equals_lax_values_and_gradient(shape, k):
    """PyTorch's MaxPool2d(k) (floor mode), equal to nn.max_pool 'VALID' forward and backward, ties included
    (the first maximum in row-major order takes the gradient)."""
    x = jax.random.normal(jax.random.key(0), shape)
    x = x.at[:, 0, 1].set(x[:, 0, 0])  # ties inside the first windows
    ref_y, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, (k, k), (k, k), "VALID"), x)
    y, vjp = jax.vjp(lambda x: max_pool_floor(x, k), x)
    g = jax.random.normal(jax.random.key(1), y.shape)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(vjp(g)[0], ref_vjp(g)[0])


@pytest.mark.parametrize("use_scale", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_matmul_batch_norm_equals_flax(use_scale):
    """The same variables, outputs, gradients and running statistics as nn.BatchNorm, up to rounding,
    in train and eval mode."""
    x = jax.random.normal(jax.random.key(0), (8, 5, 5, 6)) * 3 + 1
    g = jax.random.normal(jax.random.key(1), x.shape)
    results = []
    for layer in (nn.BatchNorm, MatmulBatchNorm):
        train = layer(use_running_average=False, momentum=0.6, epsilon=1e-5, use_scale=use_scale)
        variables = train.init(jax.random.key(2), x)

        def forward(params, x):
            return train.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"])

        y, stats = forward(variables["params"], x)
        grads = jax.grad(lambda p, x: jnp.sum(forward(p, x)[0] * g), argnums=(0, 1))(variables["params"], x)
        evaluated = layer(use_running_average=True, use_scale=use_scale).apply(
            {"params": variables["params"], **stats}, x)
        results.append((jax.tree_util.tree_structure(variables), y, stats, grads, evaluated))
    (structure, *flax_values), (matmul_structure, *matmul_values) = results
    assert structure == matmul_structure
    for a, b in zip(jax.tree_util.tree_leaves(flax_values), jax.tree_util.tree_leaves(matmul_values)):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5)


@pytest.mark.slow
def test_matmul_batch_norm_statistics_are_the_global_batchs():
    """Over a named axis (the train step's devices) the statistics are those of the whole batch."""
    x = jax.random.normal(jax.random.key(0), (4, 6, 3, 3, 2)) * jnp.arange(1, 5)[:, None, None, None, None]
    layer = MatmulBatchNorm(use_running_average=False, momentum=0.0, use_scale=False, axis_name="d")
    variables = layer.clone(axis_name=None).init(jax.random.key(1), x[0])
    per_device = jax.vmap(lambda x: layer.apply(variables, x, mutable=["batch_stats"])[1], axis_name="d")(x)
    whole = MatmulBatchNorm(use_running_average=False, momentum=0.0, use_scale=False).apply(
        variables, x.reshape(-1, 3, 3, 2), mutable=["batch_stats"])[1]
    for a, b in zip(jax.tree_util.tree_leaves(per_device), jax.tree_util.tree_leaves(whole)):
        np.testing.assert_allclose(a[0], b, rtol=1e-5)


@pytest.mark.slow
def test_dtype_auto_is_float32_on_the_cpu_and_bfloat16_on_accelerators():
    from jaxrec.models.kernels import compute_dtype

    assert compute_dtype("auto", "cpu") == jnp.float32
    assert compute_dtype("auto", "gpu") == compute_dtype("auto", "tpu") == jnp.bfloat16
    assert compute_dtype("bfloat16", "cpu") == jnp.bfloat16 and compute_dtype("float32", "gpu") == jnp.float32
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    model = Airbench94(10, widths=SMALL_AIRBENCH, dtype=jnp.bfloat16)
    variables = model.init(jax.random.key(1), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
    assert model.apply(variables, x).dtype == jnp.float32


@pytest.mark.parametrize("widths", [(4,), (4, 4), (4, 4, 4)])
def test_the_smallest_image_size_is_what_the_pools_leave_a_feature_of(widths):
    """airbench94's stated minimum is its architecture's: at that size the network builds (one pixel
    reaches the classifier); one pixel less is refused in one line instead of a ZeroDivisionError."""
    from jaxrec.errors import InputError
    from jaxrec.models.airbench import airbench_smallest_image
    from jaxrec.models.recipes import check_images

    config = config_for("airbench94", conv_features=widths)
    side = airbench_smallest_image(len(widths))
    model = Airbench94(num_classes=3, widths=widths, whiten=False)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))
    assert shapes["params"]["head"]["kernel"].shape == (widths[-1], 3)
    check_images(config, (side, side, 3), 3, "images")
    with pytest.raises(InputError, match=rf"at least {side}x{side} pixels: pass --image_size {side}"):
        check_images(config, (side - 1, side + 5, 3), 3, "images")
