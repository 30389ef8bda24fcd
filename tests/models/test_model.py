"""Shapes and size of the article's CNN."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import kernels
from jaxrec.config import Config
from jaxrec.errors import InputError
from jaxrec.models import count_params, create_model
from jaxrec.models.cnn import ArticleCNN
from jaxrec.models.conv import patch_conv, patch_grad_conv
from jaxrec.models.pooling import max_pool_2x2


def _init(model, shape):
    return jax.jit(model.init)(jax.random.key(0), jnp.zeros(shape))


def _shapes(model, shape):
    """The parameter shapes (nothing computed)."""
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


def test_param_count_matches_the_fixed_pytorch_original():
    assert count_params(_shapes(ArticleCNN(num_classes=10), (1, 32, 32, 3))["params"]) == 508_618


def test_layers_are_the_articles():
    params = _shapes(ArticleCNN(num_classes=10), (1, 32, 32, 3))["params"]
    kernels = [params[f"Conv_{i}"]["kernel"].shape for i in range(4)]
    assert kernels == [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128), (3, 3, 128, 128)]
    # 32 -> 16 -> 8 -> 4 -> 2: the flattened map is 2*2*128 = 512, not the article's 128*4*4.
    assert params["Dense_0"]["kernel"].shape == (512, 512)
    assert params["Dense_1"]["kernel"].shape == (512, 10)


@pytest.mark.parametrize("shape,num_classes", [
    ((4, 32, 32, 3), 10),   # CIFAR-10
    ((2, 32, 32, 3), 100),  # CIFAR-100
    ((3, 28, 28, 1), 10),   # MNIST / Fashion-MNIST
    ((2, 45, 37, 3), 7),    # odd sizes: ceil-mode pooling keeps the last row/column
    ((1, 5, 5, 1), 2),      # smaller than 2**4: still a 1x1 map after four pools
])
def test_logits_shape(shape, num_classes):
    model = ArticleCNN(num_classes=num_classes)
    logits = jax.eval_shape(model.apply, _shapes(model, shape), jnp.ones(shape))
    chex.assert_shape(logits, (shape[0], num_classes))


def test_logits_of_a_tiny_image_are_finite():
    model = ArticleCNN(num_classes=2)  # 5x5: pooled down to a 1x1 map
    chex.assert_tree_all_finite(jax.jit(model.apply)(_init(model, (1, 5, 5, 1)), jnp.ones((1, 5, 5, 1))))


def test_mnist_sized_model_has_expected_flatten_width():
    params = _shapes(ArticleCNN(num_classes=10), (1, 28, 28, 1))["params"]
    # 28 -> 14 -> 7 -> 4 -> 2 with ceil-mode pooling.
    assert params["Dense_0"]["kernel"].shape == (2 * 2 * 128, 512)
    assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 32)


def test_create_model_reads_the_config_and_rejects_unknown_names():
    model = create_model(Config(conv_features=(8, 16), dense_features=20), num_classes=5)
    params = _shapes(model, (1, 32, 32, 3))["params"]
    assert params["Conv_1"]["kernel"].shape == (3, 3, 8, 16)
    assert params["Dense_0"]["kernel"].shape == (8 * 8 * 16, 20)
    with pytest.raises(InputError, match="^--model resnet: no built-in recipe of that name"):
        create_model(Config(model="resnet"), num_classes=10)


@pytest.mark.parametrize("shape", [(3, 8, 8, 4), (2, 7, 9, 3), (1, 5, 5, 1), (2, 1, 1, 2), (2, 6, 3, 5)])
def test_max_pool_2x2_equals_flax_max_pool_forward_and_gradient(shape):
    rng = np.random.default_rng(sum(shape))
    # ReLU-like inputs have many tied maxima (zeros): the gradient must go to the same element.
    x = jnp.asarray(np.maximum(rng.normal(size=shape), 0), jnp.float32)
    x = x.at[0, 0, 0, 0].set(x[0, 0, 1, 0])  # and a tie between positive values
    reference = lambda v: nn.max_pool(v, window_shape=(2, 2), strides=(2, 2), padding="SAME")
    expected, expected_vjp = jax.vjp(reference, x)
    got, got_vjp = jax.vjp(max_pool_2x2, x)
    chex.assert_trees_all_equal(got, expected)
    cotangent = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    chex.assert_trees_all_equal(got_vjp(cotangent), expected_vjp(cotangent))
    # Through jit too (the training step's path).
    chex.assert_trees_all_equal(jax.jit(jax.grad(lambda v: (max_pool_2x2(v) * cotangent).sum()))(x),
                                expected_vjp(cotangent)[0])


@pytest.mark.parametrize("shape,padding", [((2, 8, 8, 3), "SAME"), ((2, 7, 5, 1), "SAME"), ((1, 6, 9, 4), "VALID"),
                                           ((1, 6, 6, 2), ((2, 0), (1, 1)))])
def test_patch_conv_equals_lax_conv_and_its_gradients(shape, padding):
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 5)), jnp.float32)
    dims = ("NHWC", "HWIO", "NHWC")
    reference = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), padding, dimension_numbers=dims)
    ours = lambda v, k: patch_conv(v, k, (1, 1), padding, dimension_numbers=dims)
    chex.assert_trees_all_close(ours(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
    loss = lambda conv: lambda v, k: jnp.sum(jnp.sin(conv(v, k)))
    chex.assert_trees_all_close(jax.grad(loss(ours), argnums=(0, 1))(x, kernel),
                                jax.grad(loss(reference), argnums=(0, 1))(x, kernel), rtol=1e-4, atol=1e-4)
    # Strided convolutions are not rewritten: lax computes them.
    strided = patch_conv(x, kernel, (2, 2), "SAME", dimension_numbers=dims)
    chex.assert_trees_all_equal(strided, jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=dims))


@pytest.mark.parametrize("shape,padding", [((2, 8, 8, 3), "SAME"), ((1, 6, 9, 1), "VALID")])
def test_patch_conv_equals_lax_conv_in_float64_to_its_last_bits(shape, padding):
    """In float64 the two differ only by the order of the sums: tight; float32 above is loose."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x = jnp.asarray(rng.normal(size=shape), jnp.float64)
        kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 4)), jnp.float64)
        dims = ("NHWC", "HWIO", "NHWC")
        reference = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), padding, dimension_numbers=dims)
        ours = lambda v, k: patch_conv(v, k, (1, 1), padding, dimension_numbers=dims)
        assert ours(x, kernel).dtype == jnp.float64
        chex.assert_trees_all_close(ours(x, kernel), reference(x, kernel), rtol=1e-12, atol=1e-12)
        loss = lambda conv: lambda v, k: jnp.sum(jnp.sin(conv(v, k)))
        chex.assert_trees_all_close(jax.grad(loss(ours), argnums=(0, 1))(x, kernel),
                                    jax.grad(loss(reference), argnums=(0, 1))(x, kernel), rtol=1e-12, atol=1e-12)


def test_each_platform_gets_its_row_of_the_kernel_table_and_a_knob_overrides_it():
    K = kernels.Kernels
    assert kernels.choose(Config(), "cpu") == K(image_conv="patch", pool="reshape_grad", steps_loop="unrolled",
                                                batch_norm="matmul")
    assert kernels.choose(Config(), "gpu") == K(pool="reshape_grad")
    assert kernels.choose(Config(), "tpu") == kernels.choose(Config(), "metal") == kernels.PLAIN == K(
        image_conv="lax", conv_grad="lax", pool="lax", steps_loop="rolled")
    assert kernels.choose(Config(image_conv="lax", conv_grad="patch"), "cpu") == K(
        conv_grad="patch", pool="reshape_grad", steps_loop="unrolled", batch_norm="matmul")
    assert kernels.choose(Config(steps_loop="unrolled", pool="reshape_grad"), "tpu") == K(
        pool="reshape_grad", steps_loop="unrolled")
    cnn = create_model(Config(image_conv="lax", pool="auto"), 10)  # this test runs on the CPU
    assert (cnn.image_conv, cnn.pool) == ("lax", kernels.for_platform(jax.default_backend()).pool)
    # Evaluation and prediction take eval_image_conv in place of image_conv, nothing else.
    train, evaluate = create_model(Config(), 10), create_model(Config(), 10, for_eval=True)
    assert (train.image_conv, evaluate.image_conv) == ("patch", "lax") and train.conv_grad == evaluate.conv_grad
    assert create_model(Config(eval_image_conv="patch"), 10, for_eval=True).image_conv == "patch"


@pytest.mark.parametrize("shape,padding", [((2, 8, 8, 6), "SAME"), ((1, 7, 5, 5), "VALID"),
                                           ((2, 6, 6, 5), ((2, 0), (1, 1)))])
def test_patch_grad_conv_is_lax_conv_with_the_same_kernel_gradient(shape, padding):
    """The forward and the input gradient are lax's own (bit-equal); the kernel gradient, a patch
    matmul, equals lax's up to rounding: loose in float32, to 1e-12 in float64."""
    dims = ("NHWC", "HWIO", "NHWC")
    reference = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), padding, dimension_numbers=dims)
    ours = lambda v, k: patch_grad_conv(v, k, (1, 1), padding, dimension_numbers=dims)
    loss = lambda conv: lambda v, k: jnp.sum(jnp.sin(conv(v, k)))
    for dtype, tolerance in ((jnp.float32, 1e-4), (jnp.float64, 1e-12)):
        with jax.enable_x64(dtype == jnp.float64):
            rng = np.random.default_rng(sum(shape))
            x = jnp.asarray(rng.normal(size=shape), dtype)
            kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 4)), dtype)
            chex.assert_trees_all_equal(ours(x, kernel), reference(x, kernel))
            (dx, dk), (ref_dx, ref_dk) = (jax.grad(loss(f), argnums=(0, 1))(x, kernel) for f in (ours, reference))
            assert dk.dtype == dtype
            chex.assert_trees_all_equal(dx, ref_dx)
            chex.assert_trees_all_close(dk, ref_dk, rtol=tolerance, atol=tolerance)
    # Strided convolutions are not rewritten: lax computes them.
    x = jnp.ones((1, 6, 6, shape[-1]))
    strided = patch_grad_conv(x, jnp.ones((3, 3, shape[-1], 2)), (2, 2), "SAME", dimension_numbers=dims)
    chex.assert_trees_all_equal(strided, jax.lax.conv_general_dilated(x, jnp.ones((3, 3, shape[-1], 2)), (2, 2),
                                                                      "SAME", dimension_numbers=dims))


@pytest.mark.slow
@pytest.mark.parametrize("image_conv,conv_grad,pool", [("patch", "patch", "reshape_grad"), ("patch", "lax", "lax"),
                                                       ("lax", "patch", "lax"), ("lax", "lax", "reshape_grad")])
def test_article_cnn_with_each_kernel_choice_is_the_plain_function(image_conv, conv_grad, pool):
    """Every kernel choice computes the plain model's function (lax conv, nn.max_pool): same
    parameters; the pooling's gradient bit-equal, the patch forms up to float32 rounding."""
    plain = ArticleCNN(num_classes=10)
    fast = ArticleCNN(num_classes=10, image_conv=image_conv, conv_grad=conv_grad, pool=pool)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    params = _init(fast, x.shape)
    chex.assert_trees_all_equal_shapes(params, _shapes(plain, x.shape))
    grad = lambda model: jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(model.apply(p, x)))))
    if image_conv == conv_grad == "lax":  # only the pooling differs: exact on its own (the max_pool_2x2 test)
        chex.assert_trees_all_equal(jax.jit(fast.apply)(params, x), jax.jit(plain.apply)(params, x))
        # YNNPACK (jaxrec.runtime.xla_flags) may fuse the matmuls next to another gradient differently.
        chex.assert_trees_all_close(grad(fast)(params), grad(plain)(params), rtol=1e-5, atol=1e-7)
        return
    chex.assert_trees_all_close(jax.jit(fast.apply)(params, x), jax.jit(plain.apply)(params, x), rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(grad(fast)(params), grad(plain)(params), rtol=1e-3, atol=1e-5)
