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
from jaxrec.checkpointing import RunCheckpointer, data_differences, run_meta
from jaxrec.config import Config
from jaxrec.data import load_data
from jaxrec.data.pipeline import Preprocess, epoch_indices, eval_indices
from jaxrec.errors import InputError
from jaxrec.host import peak_host_memory_mb
from jaxrec.interrupt import TrainingInterrupted, stop_on_signals
from jaxrec.metrics import report, summarize_eval
from jaxrec.models import check_model_config, count_params, create_model
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
    if config.checkpoint_every_steps < 0:
        problems.append(f"checkpoint_every_steps must be >= 0 (got {config.checkpoint_every_steps})")
    if config.checkpoint_keep < 1:
        problems.append(f"checkpoint_keep must be >= 1 (got {config.checkpoint_keep})")
    if config.eval_every_epochs < 1:
        problems.append(f"eval_every_epochs must be >= 1 (got {config.eval_every_epochs})")
    if config.learning_rate <= 0:
        problems.append(f"learning_rate must be > 0 (got {config.learning_rate})")
    if not 0 <= config.label_smoothing < 1:
        problems.append(f"label_smoothing must be in [0, 1) (got {config.label_smoothing})")
    if config.top_k < 1:
        problems.append(f"top_k must be >= 1 (got {config.top_k})")
    if config.channels not in (0, 1, 3):
        problems.append(f"channels must be 0, 1 or 3 (got {config.channels})")
    if problems:
        raise InputError("invalid config: " + "; ".join(problems))
    check_model_config(config)


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


def _call_end(position: int, base_step: int, steps_per_epoch: int, steps_per_call: int, every: int) -> int:
    """Where the device call starting at `position` in the epoch ends: after steps_per_call steps,
    at the end of the epoch, or on a multiple of `every` global steps (a checkpoint is due there)."""
    end = min(position + steps_per_call, steps_per_epoch)
    if every:
        end = min(end, (base_step + position) // every * every + every - base_step)
    return end


def train_and_evaluate(config: Config, workdir: str | Path) -> TrainState:
    """Trains `config.model` on `config.dataset`, evaluates it, and writes the run's outputs to `workdir`.

    If the workdir holds a checkpoint (and config.resume), the run continues from the latest one
    exactly as if it had not stopped. SIGTERM/SIGINT save a checkpoint and raise TrainingInterrupted.
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
    log.info("data %s: %d train / %d eval images of shape %s, %d classes; %d devices (%s), %d steps per epoch",
             data.name, len(data.train), len(data.eval), data.image_shape, data.num_classes, num_devices,
             devices[0].platform, steps_per_epoch)

    root_key = jax.random.key(config.seed)
    model = create_model(config, data.num_classes)
    state = create_train_state(config, model, data.image_shape, jax.random.split(root_key, 3)[0], steps_per_epoch)
    param_count = count_params(state.params)

    checkpoints = RunCheckpointer(workdir, config)
    restored = checkpoints.restore_latest(state) if config.resume else None
    if restored:
        state, meta = restored.state, restored.meta
        root_key = jax.random.wrap_key_data(np.asarray(meta["rng_key_data"], np.uint32))
        step, first_epoch, position = restored.step, meta["epoch"], meta["step_in_epoch"]
        sums, records, elapsed = meta["epoch_sums"], meta["records"], meta["elapsed_seconds"]
        different = data_differences(meta["dataset"], data.describe())
        if different:
            raise InputError(f"the checkpoint at step {step} in {checkpoints.directory} was trained on other data: "
                             f"{'; '.join(different)}. Pass the same data set, or start over with --resume=false "
                             f"(or another --workdir).")
        if first_epoch > config.epochs:
            raise InputError(f"the checkpoint in {checkpoints.directory} has trained {first_epoch} epochs, more than "
                             f"--epochs {config.epochs}; pass --epochs {first_epoch} or more, or another --workdir")
        log.info("resuming from the checkpoint at step %d (epoch %d, step %d of %d) in %s", step,
                 first_epoch + 1, position, steps_per_epoch, checkpoints.directory)
    else:
        step = first_epoch = position = 0
        sums, records, elapsed = None, [], 0.0
    start -= elapsed  # wall time counts the run's earlier sessions too
    _, shuffle_key, train_key = jax.random.split(root_key, 3)

    config.save(workdir / "config.json")
    outputs.write_json(workdir / "dataset.json", data.describe())
    metrics_path = workdir / "metrics.jsonl"
    outputs.write_jsonl(metrics_path, records)  # what the checkpoint knows; drops lines of a lost epoch

    preprocess = Preprocess(mean=data.mean, std=data.std, augment=config.augment)
    train_fn = make_train_fn(preprocess, devices, config.label_smoothing)
    train_images = replicate(data.train.images, devices)
    train_labels = replicate(data.train.labels, devices)
    evaluate = Evaluator(data.eval.images, data.eval.labels, preprocess, devices, config.eval_batch_size)
    state = replicate(state, devices)

    def save(epoch: int, position: int, sums: dict[str, float], test_accuracy: float | None = None) -> None:
        checkpoints.save(unreplicate(state), run_meta(
            config, step=step, epoch=epoch, step_in_epoch=position, epoch_sums=sums, records=records,
            root_key=root_key, dataset=data.describe(), elapsed=time.time() - start, test_accuracy=test_accuracy),
            test_accuracy=test_accuracy)

    def stop_here(epoch: int, position: int) -> TrainingInterrupted:
        checkpoints.wait()
        return TrainingInterrupted(
            f"stopped by {stop.name} at step {step} (epoch {epoch + 1}, step {position} of {steps_per_epoch}); "
            f"checkpoint saved in {checkpoints.directory}. To resume, run the same command again "
            f"(same --workdir).", stop.signum)

    result = None  # the last evaluation, reported in eval.json at the end
    with stop_on_signals() as stop:
        try:
            for epoch in range(first_epoch, config.epochs):
                indices = epoch_indices(shuffle_key, epoch, len(data.train), config.batch_size)
                if epoch != first_epoch or sums is None:
                    position, sums = 0, {"loss": 0.0, "accuracy": 0.0, "seconds": 0.0}
                bar = tqdm(total=steps_per_epoch * config.batch_size, initial=position * config.batch_size,
                           unit="img", unit_scale=True, desc=f"epoch {epoch + 1}/{config.epochs}",
                           disable=not config.progress, leave=False)
                while position < steps_per_epoch:
                    end = _call_end(position, epoch * steps_per_epoch, steps_per_epoch, config.steps_per_call,
                                    config.checkpoint_every_steps)
                    call_start = time.perf_counter()
                    state, metrics = train_fn(state, train_images, train_labels,
                                              split_over_devices(indices[position:end], num_devices), train_key)
                    loss = np.asarray(metrics["loss"][0])  # waits for the device: the timing is honest
                    sums["seconds"] += time.perf_counter() - call_start
                    _check_finite(loss, step)
                    step += end - position
                    position = end
                    for loss_value, accuracy in zip(loss.tolist(), np.asarray(metrics["accuracy"][0]).tolist()):
                        sums["loss"] += loss_value  # step by step: the same sums whatever the steps per call
                        sums["accuracy"] += accuracy
                    bar.update(len(loss) * config.batch_size)
                    bar.set_postfix(loss=f"{sums['loss'] / position:.4f}", acc=f"{sums['accuracy'] / position:.4f}")
                    due = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
                    if position < steps_per_epoch and (due or stop.requested):
                        save(epoch, position, sums)
                        if stop.requested:
                            raise stop_here(epoch, position)
                bar.close()

                record = {"epoch": epoch + 1, "step": step,
                          "train_loss": sums["loss"] / steps_per_epoch,
                          "train_accuracy": sums["accuracy"] / steps_per_epoch,
                          "train_seconds": sums["seconds"],
                          "images_per_second": steps_per_epoch * config.batch_size / sums["seconds"]}
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
                save(epoch + 1, 0, {"loss": 0.0, "accuracy": 0.0, "seconds": 0.0}, record.get("test_accuracy"))
                if stop.requested and epoch + 1 < config.epochs:
                    raise stop_here(epoch + 1, 0)
        finally:
            checkpoints.close()  # waits for saves in flight: an exit never leaves half a checkpoint

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
        "resumed_from_step": restored.step if restored else None,
        "test_accuracy_per_epoch": [r.get("test_accuracy") for r in records],
        "dataset": data.describe(), "config": config.to_dict(),
        "versions": outputs.versions(), "machine": outputs.machine(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    outputs.write_json(workdir / "summary.json", summary)
    outputs.plot_curves(records, workdir / "curves.png",
                        title=f"{config.model} on {config.dataset_tag}, seed {config.seed}")
    outputs.write_eval(workdir, report(result or evaluate(state), data.class_names, config.top_k),
                       title=f"{config.model} on {config.dataset_tag}/{config.eval_split}, seed {config.seed}")
    log.info("done: test accuracy %.4f after %d epochs (%d steps); outputs in %s",
             summary["test_accuracy"], config.epochs, step, workdir)
    return unreplicate(state)


__all__ = ["Evaluator", "check_config", "train_and_evaluate"]
