"""The training loop: `train_and_evaluate(config, workdir)`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax.training.train_state import TrainState
from tqdm.auto import tqdm

from jaxrec import outputs
from jaxrec.config import Config
from jaxrec.data import load_data
from jaxrec.data.pipeline import Preprocess, epoch_indices, eval_indices
from jaxrec.errors import InputError
from jaxrec.host import peak_host_memory_mb
from jaxrec.metrics import summarize_eval
from jaxrec.models import count_params, create_model
from jaxrec.parallel import (make_eval_fn, make_train_fn, per_device_batch, replicate, select_devices,
                             split_over_devices, unreplicate)
from jaxrec.state import create_train_state

log = logging.getLogger(__name__)


def check_config(config: Config) -> None:
    """Rejects settings that cannot work, before any data is loaded."""
    problems = []
    if config.epochs < 1:
        problems.append(f"epochs must be >= 1 (got {config.epochs})")
    if config.steps_per_call < 1:
        problems.append(f"steps_per_call must be >= 1 (got {config.steps_per_call})")
    if config.eval_every_epochs < 1:
        problems.append(f"eval_every_epochs must be >= 1 (got {config.eval_every_epochs})")
    if config.learning_rate <= 0:
        problems.append(f"learning_rate must be > 0 (got {config.learning_rate})")
    if not 0 <= config.label_smoothing < 1:
        problems.append(f"label_smoothing must be in [0, 1) (got {config.label_smoothing})")
    if config.channels not in (0, 1, 3):
        problems.append(f"channels must be 0, 1 or 3 (got {config.channels})")
    if problems:
        raise InputError("invalid config: " + "; ".join(problems))


class Evaluator:
    """Evaluates a replicated state over a whole split kept on the devices, each example once."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, preprocess: Preprocess,
                 devices: list[jax.Device], global_batch: int):
        n = len(devices)
        per_device = -(-global_batch // n)  # padding makes any eval batch size work
        indices, mask = eval_indices(len(labels), per_device * n)
        self.batches = [(i.reshape(n, per_device), m.reshape(n, per_device)) for i, m in zip(indices, mask)]
        self.images = replicate(images, devices)
        self.labels = replicate(labels, devices)
        self.fn = make_eval_fn(preprocess, devices)

    def __call__(self, state) -> dict[str, Any]:
        totals = None
        for indices, mask in self.batches:  # sums stay on the device until the end
            sums = self.fn(state, self.images, self.labels, indices, mask)
            totals = sums if totals is None else jax.tree_util.tree_map(jax.numpy.add, totals, sums)
        return summarize_eval(jax.device_get(unreplicate(totals)))


def _check_finite(losses: np.ndarray, first_step: int) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise FloatingPointError(
            f"training loss became {losses[bad[0]]} at step {step}; the run was stopped there. Lower "
            f"--learning_rate, add --warmup_epochs, or check the input data.")


def train_and_evaluate(config: Config, workdir: str | Path) -> TrainState:
    """Trains `config.model` on `config.dataset`, evaluates it, and writes the run's outputs to `workdir`.

    Returns the final train state (on the first device); the summary is in workdir/summary.json.
    """
    start = time.time()
    check_config(config)
    devices = select_devices(config.num_devices)
    num_devices = len(devices)
    per_device_batch(config.batch_size, num_devices)  # refuse an uneven batch before loading data
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    data = load_data(config)
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"the training split has {len(data.train)} examples, fewer than one batch of "
                         f"{config.batch_size}; lower --batch_size")
    config.save(workdir / "config.json")
    outputs.write_json(workdir / "dataset.json", data.describe())
    metrics_path = workdir / "metrics.jsonl"
    metrics_path.write_text("")
    log.info("data %s: %d train / %d eval images of shape %s, %d classes; %d devices (%s), %d steps per epoch",
             data.name, len(data.train), len(data.eval), data.image_shape, data.num_classes, num_devices,
             devices[0].platform, steps_per_epoch)

    init_key, shuffle_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    model = create_model(config, data.num_classes)
    state = create_train_state(config, model, data.image_shape, init_key, steps_per_epoch)
    param_count = count_params(state.params)
    preprocess = Preprocess(mean=data.mean, std=data.std, augment=config.augment)

    train_fn = make_train_fn(preprocess, devices, config.label_smoothing)
    train_images = replicate(data.train.images, devices)
    train_labels = replicate(data.train.labels, devices)
    evaluate = Evaluator(data.eval.images, data.eval.labels, preprocess, devices, config.eval_batch_size)
    state = replicate(state, devices)

    records: list[dict[str, Any]] = []
    step = 0
    for epoch in range(config.epochs):
        indices = epoch_indices(shuffle_key, epoch, len(data.train), config.batch_size)
        loss_sum = accuracy_sum = 0.0
        bar = tqdm(total=steps_per_epoch * config.batch_size, unit="img", unit_scale=True,
                   desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress, leave=False)
        epoch_start = time.perf_counter()
        for first in range(0, steps_per_epoch, config.steps_per_call):
            chunk = indices[first:first + config.steps_per_call]
            state, metrics = train_fn(state, train_images, train_labels, split_over_devices(chunk, num_devices),
                                      train_key)
            loss = np.asarray(metrics["loss"][0])  # waits for the device: the timing below is honest
            _check_finite(loss, step)
            step += len(chunk)
            loss_sum += float(loss.sum())
            accuracy_sum += float(np.asarray(metrics["accuracy"][0]).sum())
            done = first + len(chunk)
            bar.update(len(chunk) * config.batch_size)
            bar.set_postfix(loss=f"{loss_sum / done:.4f}", acc=f"{accuracy_sum / done:.4f}")
        train_seconds = time.perf_counter() - epoch_start
        bar.close()

        record = {"epoch": epoch + 1, "step": step,
                  "train_loss": loss_sum / steps_per_epoch,
                  "train_accuracy": accuracy_sum / steps_per_epoch,
                  "train_seconds": train_seconds,
                  "images_per_second": steps_per_epoch * config.batch_size / train_seconds}
        if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.epochs:
            eval_start = time.perf_counter()
            result = evaluate(state)
            record.update(test_loss=result["loss"], test_accuracy=result["accuracy"],
                          test_macro_f1=result["macro_f1"], eval_seconds=time.perf_counter() - eval_start)
        record["wall_seconds"] = time.time() - start
        records.append(record)
        outputs.append_jsonl(metrics_path, record)
        log.info("epoch %d/%d: train loss %.4f acc %.4f | test loss %s acc %s | %.0f images/s",
                 epoch + 1, config.epochs, record["train_loss"], record["train_accuracy"],
                 f"{record['test_loss']:.4f}" if "test_loss" in record else "-",
                 f"{record['test_accuracy']:.4f}" if "test_accuracy" in record else "-",
                 record["images_per_second"])

    # The first epoch includes compilation; the speed figure leaves it out when there is more.
    timed = records[1:] or records
    final = records[-1]
    summary = {
        "test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
        "test_macro_f1": final["test_macro_f1"],
        "epochs": config.epochs, "steps": step,
        "train_images_per_second": len(timed) * steps_per_epoch * config.batch_size
        / sum(r["train_seconds"] for r in timed),
        "param_count": param_count, "seed": config.seed, "num_devices": num_devices,
        "peak_host_memory_mb": peak_host_memory_mb(),
        "wall_seconds": time.time() - start,
        "test_accuracy_per_epoch": [r.get("test_accuracy") for r in records],
        "dataset": data.describe(), "config": config.to_dict(),
        "versions": outputs.versions(), "machine": outputs.machine(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    outputs.write_json(workdir / "summary.json", summary)
    outputs.plot_curves(records, workdir / "curves.png",
                        title=f"{config.model} on {config.dataset_tag}, seed {config.seed}")
    log.info("done: test accuracy %.4f after %d epochs (%d steps); outputs in %s",
             summary["test_accuracy"], config.epochs, step, workdir)
    return unreplicate(state)


__all__ = ["Evaluator", "check_config", "train_and_evaluate"]
