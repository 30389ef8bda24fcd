"""How fast the streaming input (--input stream) reads, and trains, beside the on-device path.

`pipeline` times the reading alone: the batches of one shuffled pass read by Grain with 0 (threads
of this process), 1 or 2 --data_workers processes, as a streamed run reads them, against the
on-device path's one decoding of the split into memory (threads, once per run). `train` times
training: `jaxrec train` run with --input device and with --input stream --data_workers N, each run's
images/s taken from metrics.jsonl over its epochs that compiled nothing. Variants take turns, round by
round, so each sees the same machine; the figures are the medians over rounds. Extra arguments after
`--` go to every `jaxrec train`.

    python experiments/stream_speed.py pipeline CIFAR_JPEG --batches 60
    python experiments/stream_speed.py train SMALL_FOLDER --epochs 3 -- --model cnn
    python experiments/stream_speed.py train SMALL_FOLDER --json results/x.json -- --conv_features 8 --dense_features 32

A folder of larger images for it: experiments/upscaled_folder.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from jaxrec.config import Config, check
from jaxrec.data.sources import stream_splits
from jaxrec.data.stream import BUFFER, RowReader, StreamedDataset


def read_rate(train: StreamedDataset, rows: np.ndarray, workers: int) -> dict[str, float]:
    """Images/s of reading `rows` [batches, batch] with `workers` processes, and the seconds to the first
    batch (workers starting, or the thread pool). The rate leaves out the batches read ahead while the
    first was awaited (BUFFER per reader): past them, this loop waits on decoding alone."""
    skip = 1 + BUFFER * max(workers, 1)
    if len(rows) < 2 * skip:
        raise SystemExit(f"error: {len(rows)} batches are too few to time {workers} workers; pass --batches {4 * skip}")
    reader = RowReader(train.reader, rows, workers)
    times = [time.perf_counter()]
    for _ in rows:
        next(reader)
        times.append(time.perf_counter())
    reader.close()
    return {"images_per_second": rows[skip:].size / (times[-1] - times[skip]),
            "first_batch_seconds": times[1] - times[0]}


def decode_rate(train: StreamedDataset, rows: np.ndarray) -> dict[str, float]:
    """Images/s of decoding the examples of `rows` into memory as the on-device path loads a split."""
    start = time.perf_counter()
    train.take(rows.reshape(-1))
    return {"images_per_second": rows.size / (time.perf_counter() - start)}


def pipeline(args: argparse.Namespace) -> dict:
    """The `pipeline` measurement: each variant's median images/s over the rounds."""
    train = stream_splits(check(Config(dataset=str(args.dataset))).data_plan)[0]
    count = min(len(train), args.batches * args.batch_size)
    rows = np.random.default_rng(0).permutation(len(train))[:count // args.batch_size * args.batch_size]
    rows = rows.reshape(-1, args.batch_size)
    variants = {"device path (decode into memory)": lambda: decode_rate(train, rows),
                **{f"stream, {w} workers": (lambda w=w: read_rate(train, rows, w)) for w in args.workers}}
    figures = in_turns(variants, args.rounds)
    return {"image_shape": list(train.image_shape), "images_per_round": int(rows.size), "batch_size": args.batch_size,
            "variants": {name: _medians(runs) for name, runs in figures.items()}}


def train_rate(dataset: Path, flags: list[str], epochs: int, extra: list[str]) -> dict[str, float]:
    """One `jaxrec train` run in a fresh workdir: its images/s over the epochs that compiled nothing
    (median), and its wall seconds."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "jaxrec", "train", "--dataset", str(dataset), "--workdir", workdir,
                   "--epochs", str(epochs), "--eval_every_epochs", str(epochs), "--progress", "false", *flags, *extra]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    steady = [r["images_per_second"] for r in records if not r["includes_compilation"]]
    if not steady:
        raise SystemExit(f"error: every epoch of {' '.join(command)} compiled; pass --epochs 2 or more")
    return {"images_per_second": statistics.median(steady), "wall_seconds": wall}


def train(args: argparse.Namespace) -> dict:
    """The `train` measurement: each variant's median images/s over the rounds."""
    variants = {"device path": ["--input", "device"],
                **{f"stream, {w} workers": ["--input", "stream", "--data_workers", str(w)] for w in args.workers}}
    figures = in_turns({name: (lambda flags=flags: train_rate(args.dataset, flags, args.epochs, args.extra))
                        for name, flags in variants.items()}, args.rounds)
    first = next(iter(figures.values()))
    summary = {name: _medians(runs) for name, runs in figures.items()}
    for name, runs in figures.items():  # each round's ratio to the device path, then their median
        summary[name]["ratio_to_device"] = statistics.median(
            r["images_per_second"] / d["images_per_second"] for r, d in zip(runs, first))
    return {"epochs": args.epochs, "train_flags": args.extra, "variants": summary}


def in_turns(variants: dict[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
    """Each variant's figures, measured once per round, the variants in turn (so each sees the same machine)."""
    figures: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, measure in variants.items():
            figures[name].append(measure())
            print(f"round {round_ + 1}: {name}: {figures[name][-1]['images_per_second']:,.0f} images/s", flush=True)
    return figures


def _medians(runs: list[dict]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {"rounds": len(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("what", choices=("pipeline", "train"))
    parser.add_argument("dataset", type=Path, help="an image folder (train/ and test/ of class folders)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="--data_workers to try")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=60, help="pipeline: batches read per variant and round")
    parser.add_argument("--batch_size", type=int, default=128, help="pipeline: images per batch")
    parser.add_argument("--epochs", type=int, default=3, help="train: epochs per run (the first compiles)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to every jaxrec train
    args = parser.parse_args(argv[:split])
    args.extra = argv[split + 1:]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = (pipeline if args.what == "pipeline" else train)(args)
    result = {"what": args.what, "dataset": args.dataset.name, "date": started, "machine": platform.processor() or
              platform.machine(), "python": platform.python_version(), "command": " ".join(sys.argv), **result}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":  # Grain's worker processes import this module: nothing runs on import
    main()
