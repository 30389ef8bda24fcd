"""Evaluates a saved run's checkpoint on a split of its data set, or of another with the same classes.

    python -m jaxrec.evaluate --workdir runs/cnn_cifar10-jpeg_seed0
    python -m jaxrec.evaluate --workdir DIR --which latest --split train
    python -m jaxrec.evaluate --workdir DIR --dataset ~/data/other_photos --split test --out reports/

Rebuilds the model from the checkpoint's config and runs the training run's own Evaluator (the
same pmapped eval step, every example once) with the training statistics from dataset.json. Writes
eval_<split>.json, eval_<split>.md and confusion_<split>.png (the name also carries the data set
when --dataset is given and `_latest` for --which latest) into --out, default the workdir, so the
training run's eval.json is never overwritten; prints the per-class table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from jaxrec import outputs
from jaxrec.checkpointing import Trained, load_trained
from jaxrec.cli import exit_code, setup_logging
from jaxrec.data.pipeline import Preprocess
from jaxrec.data.sources import load_split
from jaxrec.metrics import report
from jaxrec.parallel import replicate, select_devices
from jaxrec.state import inference_state
from jaxrec.train import Evaluator


def evaluate_trained(trained: Trained, split: str | None = None, dataset: str | None = None,
                     top_k: int | None = None, num_devices: int = 0, batch_size: int | None = None) -> dict[str, Any]:
    """The evaluation report (see jaxrec.metrics.report) of a trained model (load_trained) on `split`
    (default: its eval split) of `dataset` (default: its own)."""
    config = trained.config.replace(dataset=dataset or trained.config.dataset)
    class_names = list(trained.dataset["class_names"])
    data = load_split(config, split or config.eval_split, class_names, trained.dataset["image_shape"])
    devices = select_devices(num_devices)
    preprocess = Preprocess(mean=tuple(trained.dataset["mean"]), std=tuple(trained.dataset["std"]))
    evaluator = Evaluator(data.images, data.labels, preprocess, devices, batch_size or config.eval_batch_size)
    state = replicate(inference_state(trained.model(), trained.params), devices)
    return report(evaluator(state), class_names, top_k or config.top_k)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxrec.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="the training run's output directory")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="checkpoint: best test accuracy, or the latest (default: best)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the run's eval split)")
    parser.add_argument("--dataset", default=None,
                        help="another data set with the same classes (TFDS name or image folder; default: the run's)")
    parser.add_argument("--top_k", type=int, default=None, help="k of top-k accuracy (default: the run's)")
    parser.add_argument("--out", default=None, help="directory for the report files (default: the workdir)")
    parser.add_argument("--num_devices", type=int, default=0, help="local devices to use (0: all)")
    parser.add_argument("--batch_size", type=int, default=None, help="global eval batch (default: the run's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()

    def run() -> None:
        trained = load_trained(args.workdir, args.which)
        split = args.split or trained.config.eval_split
        result = evaluate_trained(trained, split, args.dataset, args.top_k, args.num_devices, args.batch_size)
        dataset = Path(args.dataset).name if args.dataset else None
        suffix = "_" + "_".join(filter(None, [dataset, split, "latest" if args.which == "latest" else None]))
        title = (f"{trained.config.model} ({args.which} checkpoint, epoch {trained.epoch}) on "
                 f"{dataset or trained.config.dataset_tag}/{split}")
        paths = outputs.write_eval(Path(args.out or args.workdir), result, suffix, title)
        print(outputs.eval_markdown(result, title))
        print("wrote " + ", ".join(map(str, paths)))

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
