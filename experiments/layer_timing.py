"""Time each layer of the article CNN on this device: convolution (XLA's vs the patch matmul of
jaxrec.models.conv) and 2x2 max-pooling (nn.max_pool vs jaxrec.models.pooling), forward and
forward+backward, at one batch size. The per-layer figures in results/benchmark.md come from here.

    python experiments/layer_timing.py            # batch 128, CIFAR-10 shapes
    python experiments/layer_timing.py --batch 1000
"""

import argparse
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.models.conv import patch_conv
from jaxrec.models.pooling import max_pool_2x2

DIMS = ("NHWC", "HWIO", "NHWC")
LAYERS = ((32, 3, 32), (16, 32, 64), (8, 64, 128), (4, 128, 128))  # (height, in, out) of the 4 conv blocks


def milliseconds(fn, *args, calls: int = 10, windows: int = 5) -> float:
    """Median over `windows` of the mean time of `calls` calls, after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    return 1e3 * float(np.median(times))


def forward_and_backward(fn):
    return jax.jit(jax.grad(lambda *args: jnp.sum(jnp.sin(fn(*args))), argnums=tuple(range(fn.__code__.co_argcount))))


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if args.batch < 1:  # an empty batch times nothing: its figures would look like timings
        print(f"error: --batch must be >= 1, got {args.batch}", file=sys.stderr)
        return 2
    convs = {"xla conv": lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DIMS),
             "patch matmul": lambda x, k: patch_conv(x, k, (1, 1), "SAME", dimension_numbers=DIMS)}
    pools = {"nn.max_pool": lambda x: nn.max_pool(x, (2, 2), (2, 2), "SAME"), "max_pool_2x2": lambda x: max_pool_2x2(x)}
    rng = np.random.default_rng(0)
    print(f"{jax.devices()[0].device_kind}, batch {args.batch}; milliseconds, forward / forward+backward")
    for height, cin, cout in LAYERS:
        x = jnp.asarray(rng.normal(size=(args.batch, height, height, cin)), jnp.float32)
        k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
        y = jnp.asarray(rng.normal(size=(args.batch, height, height, cout)), jnp.float32)
        row = [f"{name} {milliseconds(jax.jit(f), x, k):.2f} / {milliseconds(forward_and_backward(f), x, k):.2f}"
               for name, f in convs.items()]
        row += [f"{name} {milliseconds(jax.jit(f), y):.2f} / {milliseconds(forward_and_backward(f), y):.2f}"
                for name, f in pools.items()]
        print(f"layer {height}x{height} {cin}->{cout}: " + " | ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
