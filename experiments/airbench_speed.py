"""airbench94's training speed against the PyTorch reference, in interleaved pairs on one machine.

Each pair runs the reference's steady-state benchmark (`peer_airbench94_cpu.py DATA --bench STEPS`:
training images/s on real cropped batches of 1,024, lookahead included) and then
`jaxrec benchmark --model airbench94 --json` (the training loop's own compiled program, batch 1,024),
one after the other, so both see the same minutes of a shared machine. It prints every pair and
the median of the pairs' ratios (jaxrec / reference), and writes them as JSON with --out.

    python experiments/airbench_speed.py --peer PATH/peer_airbench94_cpu.py --peer_python PYTHON \\
        --data PATH/cifar10-jpeg --pairs 5 --out results/airbench94/speed.json

Extra arguments after `--` go to `jaxrec benchmark` (e.g. `-- --dtype bfloat16`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def last_json(text: str) -> dict:
    """The last line of `text` that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in the output:\n{text[-2000:]}")


def run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return last_json(done.stdout)


def jaxrec_json(text: str) -> dict:
    """`jaxrec benchmark --json` prints one indented object."""
    return json.loads(text[text.index("{"):])


def machine() -> str:
    """The CPU's model name (Linux) or architecture, and the cores this process may use."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        name = names[0] if names else name
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", required=True, help="path of peer_airbench94_cpu.py")
    parser.add_argument("--peer_python", required=True, help="a Python with torch, numpy and pillow")
    parser.add_argument("--data", required=True, help="the CIFAR-10 image folder the reference reads")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--bench_steps", type=int, default=10, help="the reference's --bench")
    parser.add_argument("--out", help="write the pairs and the median ratio here (JSON)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    jaxrec = [sys.executable, "-m", "jaxrec", "benchmark", "--model", "airbench94", "--json", *extra]
    pairs = []
    for i in range(args.pairs):
        peer = run([args.peer_python, args.peer, args.data, "--bench", str(args.bench_steps)])
        done = subprocess.run(jaxrec, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"jaxrec benchmark failed:\n{done.stderr[-3000:]}")
        ours = jaxrec_json(done.stdout)
        pair = {"time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "peer_images_per_second": peer["images_per_second"],
                "jaxrec_images_per_second": ours["train_images_per_second"],
                "ratio": ours["train_images_per_second"] / peer["images_per_second"]}
        pairs.append(pair)
        print(f"pair {i + 1}/{args.pairs}: reference {pair['peer_images_per_second']:.0f} images/s, jaxrec "
              f"{pair['jaxrec_images_per_second']:.0f} images/s, ratio {pair['ratio']:.3f}", flush=True)
    result = {"median_ratio": statistics.median(p["ratio"] for p in pairs), "pairs": pairs,
              "jaxrec_command": " ".join(["jaxrec", *jaxrec[3:]]),
              "peer_command": f"{Path(args.peer).name} DATA --bench {args.bench_steps}",
              "machine": machine(),
              "jaxrec_last": {k: ours[k] for k in ("device_kind", "num_devices", "versions", "train_compile_seconds")
                              if k in ours}, "peer_last": peer}
    print(f"median ratio over {len(pairs)} pairs: {result['median_ratio']:.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
