"""airbench94's six 3x3 convolutions at batch 1024: XLA:CPU (as jaxrec runs it) against PyTorch's CPU
convolutions (oneDNN), forward and forward + both gradients, layer by layer, in interleaved pairs.

This is where the training step's time goes on a CPU: the convolutions are most of it, and the
reference's are faster, in the backward pass above all. The JAX side runs one device over the
process's cores (jaxrec's XLA flags, YNNPACK included); the PyTorch side uses as many threads.
Each pair runs PyTorch in a subprocess (its own interpreter: PyTorch is no dependency of jaxrec)
and then JAX here; the report is each layer's median over the pairs and the ratio PyTorch / JAX
time (below 1: PyTorch is faster), and what a 2048 x 2048 float32 matmul reaches on each side.

    python experiments/airbench_conv_timing.py --torch_python PYTHON --pairs 3 --out results/airbench94/conv_timing.json
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


def jax_times() -> dict:
    from jaxrec.config import Config
    from jaxrec.runtime import xla_flags

    xla_flags.set_cpu_flags(Config())  # jaxrec's XLA:CPU flags, before JAX starts
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


def report(pairs: list[dict]) -> dict:
    """Each layer's medians over the pairs and the ratios torch / jax (below 1: PyTorch is faster), and
    each side's matmul GFLOP/s."""
    pairs = [{**p, "jax": p["jax"]["layers"], "torch": p["torch"]["layers"],
              "matmul_ms": {side: p[side]["matmul_ms"] for side in ("jax", "torch")}} for p in pairs]
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
    matmul = {f"{side}_matmul_gflops": 2 * MATMUL**3 / statistics.median(p["matmul_ms"][side] for p in pairs) / 1e6
              for side in ("jax", "torch")}
    return {"layers": layers, "totals": totals, **matmul, "pairs": pairs}


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=("both", "torch"), default="both")
    parser.add_argument("--torch_python", default=sys.executable, help="an interpreter with PyTorch")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args()
    if args.framework == "torch":
        print(json.dumps(torch_times(args.threads)))
        return 0
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"
    pairs = []
    for _ in range(args.pairs):
        torch_run = subprocess.run([args.torch_python, __file__, "--framework", "torch", "--threads", str(args.threads)],
                                   capture_output=True, text=True, check=True)
        pairs.append({"torch": json.loads(torch_run.stdout.strip().splitlines()[-1]), "jax": jax_times(),
                      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    result = report(pairs)
    print("layer | jax fwd | torch fwd | torch/jax | jax fwd+bwd | torch fwd+bwd | torch/jax (ms)")
    for r in result["layers"]:
        print(f"{r['layer']} | {r['jax_forward_ms']:.0f} | {r['torch_forward_ms']:.0f} | {r['ratio_forward']:.2f} | "
              f"{r['jax_forward_backward_ms']:.0f} | {r['torch_forward_backward_ms']:.0f} | "
              f"{r['ratio_forward_backward']:.2f}")
    t = result["totals"]
    print(f"all six | {t['jax_forward_ms']:.0f} | {t['torch_forward_ms']:.0f} | | {t['jax_forward_backward_ms']:.0f} | "
          f"{t['torch_forward_backward_ms']:.0f} |")
    print(f"float32 {MATMUL}x{MATMUL} matmul: jax {result['jax_matmul_gflops']:.0f} GFLOP/s, "
          f"torch {result['torch_matmul_gflops']:.0f} GFLOP/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**result, "threads": args.threads, "batch": BATCH}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
