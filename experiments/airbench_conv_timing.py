"""airbench94's six 3x3 convolutions at batch 1024: XLA:CPU against PyTorch's CPU convolutions (oneDNN),
forward and forward + both gradients, layer by layer, in interleaved rounds; one JAX side per variant
of XLA:CPU's flags.

This is where the training step's time goes on a CPU: the convolutions are most of it. Which kernels
XLA:CPU uses for them is a matter of flags set before JAX starts (jaxrec.runtime.xla_flags), so each
variant runs in a process of its own: `jaxrec` is the flags jaxrec sets on this jaxlib, `default` none
(XLA's own choice), and NAME=FLAGS any other XLA_FLAGS. Each round runs PyTorch (its own interpreter:
PyTorch is no dependency of jaxrec), then every variant, in turn; the report is each layer's median
over the rounds and the ratio PyTorch time / JAX time (below 1: PyTorch is faster), and what a
2048 x 2048 float32 matmul reaches on each side.

    python experiments/airbench_conv_timing.py --torch_python PYTHON --pairs 3 --out results/airbench94/conv_timing.json
    python experiments/airbench_conv_timing.py --torch_python PYTHON --variant jaxrec --variant default \
        --variant onednn="--xla_cpu_experimental_onednn_custom_call=true --xla_cpu_experimental_ynn_fusion_type=dot"
    PYTHON experiments/airbench_conv_timing.py --framework torch      # PyTorch alone, one JSON line
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (height = width, in channels, out channels) of the six 3x3 convolutions, in the network's order.
LAYERS = ((31, 24, 64), (15, 64, 64), (15, 64, 256), (7, 256, 256), (7, 256, 256), (3, 256, 256))
BATCH = 1024
MATMUL = 2048  # a float32 [2048, 2048] @ [2048, 2048]: what each side's matmuls reach here


def median_ms(run, repeats: int = 5) -> float:
    """Median milliseconds of `run()` (which must block until done) after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def torch_times(threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    rows = []
    for height, cin, cout in LAYERS:
        last = torch.channels_last
        x = torch.randn(BATCH, cin, height, height).contiguous(memory_format=last).requires_grad_(True)
        w = (torch.randn(cout, cin, 3, 3) * 0.05).contiguous(memory_format=last).requires_grad_(True)
        g = torch.randn(BATCH, cout, height, height).contiguous(memory_format=last)

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, padding=1)

        def backward():
            torch.autograd.grad(F.conv2d(x, w, padding=1), (x, w), g)

        rows.append({"forward_ms": median_ms(forward), "forward_backward_ms": median_ms(backward)})
    a = torch.randn(MATMUL, MATMUL)
    return {"layers": rows, "matmul_ms": median_ms(lambda: a @ a)}


def jax_times(flags: str) -> dict:
    """The JAX side with XLA_FLAGS `flags` ('jaxrec': the flags a jaxrec run sets; '': XLA's default)."""
    from jaxrec.config import Config
    from jaxrec.runtime import xla_flags

    devices = "--xla_force_host_platform_device_count=1"
    os.environ["XLA_FLAGS"] = devices if flags == "jaxrec" else f"{devices} {flags}".strip()
    if flags == "jaxrec":
        xla_flags.set_cpu_flags(Config())  # before JAX starts
    import jax
    import numpy as np

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def both(x, k, g):
        y, vjp = jax.vjp(conv, x, k)
        return (y, *vjp(g))

    forward, backward = jax.jit(conv), jax.jit(both)
    rng = np.random.default_rng(0)
    rows = []
    for height, cin, cout in LAYERS:
        x = jax.numpy.asarray(rng.normal(size=(BATCH, height, height, cin)), jax.numpy.float32)
        k = jax.numpy.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.05, jax.numpy.float32)
        g = jax.numpy.asarray(rng.normal(size=(BATCH, height, height, cout)), jax.numpy.float32)
        rows.append({"forward_ms": median_ms(lambda: jax.block_until_ready(forward(x, k))),
                     "forward_backward_ms": median_ms(lambda: jax.block_until_ready(backward(x, k, g)))})
    a = jax.numpy.asarray(rng.normal(size=(MATMUL, MATMUL)), jax.numpy.float32)
    matmul = jax.jit(jax.numpy.dot)
    return {"layers": rows, "matmul_ms": median_ms(lambda: jax.block_until_ready(matmul(a, a)))}


def report(pairs: list[dict], variant: str) -> dict:
    """One variant's layers: medians over the rounds and the ratios torch / jax (below 1: PyTorch is
    faster), the six layers' totals and their ratio, and each side's matmul GFLOP/s."""
    pairs = [{"jax": p["jax"][variant]["layers"], "torch": p["torch"]["layers"],
              "matmul_ms": {"jax": p["jax"][variant]["matmul_ms"], "torch": p["torch"]["matmul_ms"]}} for p in pairs]
    layers = []
    for i, (height, cin, cout) in enumerate(LAYERS):
        row = {"layer": f"{height}x{height} {cin}->{cout}"}
        for key in ("forward_ms", "forward_backward_ms"):
            for side in ("jax", "torch"):
                row[f"{side}_{key}"] = statistics.median(p[side][i][key] for p in pairs)
            row[f"ratio_{key.removesuffix('_ms')}"] = statistics.median(p["torch"][i][key] / p["jax"][i][key]
                                                                      for p in pairs)
        layers.append(row)
    totals = {f"{side}_{key}": sum(r[f"{side}_{key}"] for r in layers)
              for side in ("jax", "torch") for key in ("forward_ms", "forward_backward_ms")}
    ratio = statistics.median(sum(r["forward_backward_ms"] for r in p["torch"]) /
                              sum(r["forward_backward_ms"] for r in p["jax"]) for p in pairs)
    matmul = {f"{side}_matmul_gflops": 2 * MATMUL**3 / statistics.median(p["matmul_ms"][side] for p in pairs) / 1e6
              for side in ("jax", "torch")}
    return {"layers": layers, "totals": totals, "ratio_forward_backward": ratio, **matmul}


def run_side(python: str, *args: str) -> dict:
    """One side, in a process of its own: its JSON line."""
    done = subprocess.run([python, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=("both", "torch", "jax"), default="both")
    parser.add_argument("--torch_python", default=sys.executable, help="an interpreter with PyTorch")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pairs", type=int, default=3, help="rounds")
    parser.add_argument("--variant", action="append", help="jaxrec, default, or NAME=XLA_FLAGS (repeatable; "
                        "default: jaxrec)")
    parser.add_argument("--xla_flags", default="jaxrec", help="with --framework jax: the variant's flags")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args()
    if args.framework == "torch":
        print(json.dumps(torch_times(args.threads)))
        return 0
    if args.framework == "jax":
        print(json.dumps(jax_times(args.xla_flags)))
        return 0
    variants = dict(v.split("=", 1) if "=" in v else (v, {"jaxrec": "jaxrec", "default": ""}[v])
                    for v in args.variant or ["jaxrec"])
    pairs = []
    for _ in range(args.pairs):
        pairs.append({"torch": run_side(args.torch_python, "--framework", "torch", "--threads", str(args.threads)),
                      "jax": {name: run_side(sys.executable, "--framework", "jax", "--xla_flags", flags)
                              for name, flags in variants.items()},
                      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    import jaxlib

    results = {name: report(pairs, name) for name in variants}
    print(f"jaxlib {jaxlib.__version__}; six layers, forward + both gradients, medians of {args.pairs} rounds")
    print("variant | XLA_FLAGS | jax (ms) | torch (ms) | torch/jax")
    for name, result in results.items():
        t = result["totals"]
        print(f"{name} | {variants[name] or '(none)'} | {t['jax_forward_backward_ms']:.0f} | "
              f"{t['torch_forward_backward_ms']:.0f} | {result['ratio_forward_backward']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"jaxlib": jaxlib.__version__, "variants": variants, "results": results, "pairs": pairs,
                       "threads": args.threads, "batch": BATCH}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
