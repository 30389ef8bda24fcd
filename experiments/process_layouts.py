"""One run, two process layouts: P local processes x D devices each against 1 process x P*D devices.

    python experiments/process_layouts.py --data DATA --out results/process_layouts [--processes 2
        --devices 1 --epochs 2 --pin] [-- more jaxrec train flags]

Trains the article's CNN (experiments/cifar_cnn.py's defaults) once per layout, the processes
joined over localhost with jax.distributed (docs/multi_host.md), then writes OUT/README.md: test
accuracy, training images/s and wall time of each, with the machine, command and date. With --pin,
the multi-process layout also runs with process i pinned to core i (taskset), which tells the cost
of the processes' thread pools competing for the cores from that of their collectives. Each
layout's workdir resumes if the script is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train(workdir: Path, processes: int, devices: int, pin: bool, flags: list[str]) -> dict:
    """Runs experiments/cifar_cnn.py as `processes` processes of `devices` CPU devices (`pin`: process
    i on core i only); its summary."""
    command = [sys.executable, str(ROOT / "experiments" / "cifar_cnn.py"), "--workdir", str(workdir), *flags]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    join = ["--coordinator_address", f"localhost:{free_port()}", "--num_processes", str(processes)]
    started = time.time()
    procs = [subprocess.Popen((["taskset", "-c", str(i % os.cpu_count())] if pin else []) + command +
                              (join + ["--process_id", str(i)] if processes > 1 else []), env=env)
             for i in range(processes)]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"error: {processes} x {devices} ended with exit codes {codes}; its logs are above")
    summary = json.loads((workdir / "summary.json").read_text())
    return {**summary, "layout_wall_seconds": time.time() - started}


def report(rows: list[tuple[str, dict]], command: str) -> str:
    lines = ["| layout | test accuracy | train images/s | epoch seconds | wall seconds |", "|---|---:|---:|---:|---:|"]
    for name, s in rows:
        epochs = s["config"]["epochs"]
        lines.append(f"| {name} | {s['test_accuracy']:.4f} | {s['train_images_per_second']:.0f} | "
                     f"{(s['wall_seconds'] / epochs):.1f} | {s['layout_wall_seconds']:.0f} |")
    machine = rows[0][1]["machine"]
    return "\n".join([
        "# One run, two process layouts", "",
        f"Command: `{command}`", f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"Machine: {json.dumps(machine)}", f"Versions: {json.dumps(rows[0][1]['versions'])}", "",
        *lines, "",
        "train images/s: the epochs that include no compilation (summary.json); wall seconds: the whole "
        "launch, data loading and compilation included.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the CIFAR-10 image folder (or a TFDS name)")
    parser.add_argument("--out", required=True, help="results folder: one workdir per layout and README.md")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pin", action="store_true", help="also run the processes pinned one per core")
    args, extra = parser.parse_known_args()
    out = Path(args.out)
    flags = ["--dataset", args.data, "--epochs", str(args.epochs), "--progress", "false", *extra]
    layouts = [(args.processes, args.devices, False), *([(args.processes, args.devices, True)] if args.pin else []),
               (1, args.processes * args.devices, False)]
    rows = [(f"{p} process{'es' if p > 1 else ''} x {d} device{'s' if d > 1 else ''}{', pinned' if pin else ''}",
             train(out / f"{p}x{d}{'_pinned' if pin else ''}", p, d, pin, flags)) for p, d, pin in layouts]
    command = " ".join(["python", *sys.argv]).replace(args.data, "DATA")  # DATA: the data set, wherever it lives
    (out / "README.md").write_text(report(rows, command))
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
