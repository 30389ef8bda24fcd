"""The training loop: `train_and_evaluate(config, workdir)`.

It reads top to bottom: check the config, load the data, restore or start the run, then per epoch
`train_epoch`, `evaluate` when due, `save`; at the end `write_summary`. What changes as the run goes
is explicit: the train state (arrays, on the devices) and the `RunState` (where the loop stands);
what does not is a `Trainer` (the compiled step, the data on the devices, the random keys).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np
import flax.linen as nn
from tqdm.auto import tqdm

from jaxrec import cpu_devices, distributed, host, memory, outputs
from jaxrec.checkpointing import RunCheckpointer
from jaxrec.config import Config, check
from jaxrec.data import DataSplits, load_data
from jaxrec.data.pipeline import Preprocess, epoch_indices
from jaxrec.errors import InputError
from jaxrec.evaluation import Evaluator
from jaxrec.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from jaxrec.metrics import report
from jaxrec.models import count_params, create_model
from jaxrec.parallel import (local_devices, local_rows, make_train_fn, per_device_batch, replicate, select_devices,
                             split_over_devices, unreplicate)
from jaxrec.run_state import Record, RunState
from jaxrec.state import TrainState, create_train_state
from jaxrec.workdir import claim, move_previous_run, writable_folder

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunKeys:
    """The run's random keys, derived from the config's seeds (so never saved)."""

    init: jax.Array     # parameter initialisation
    shuffle: jax.Array  # the data order: folded with the epoch
    train: jax.Array    # augmentation: folded with the step, then the example

    @classmethod
    def from_config(cls, config: Config) -> "RunKeys":
        """Each key from its own source's seed. With one seed for all (a plain --seed), they are the
        three parts of split(key(seed), 3), as they have been since the first release."""
        seeds = config.source_seeds()
        return cls(init=_part(seeds["init"], 0), shuffle=_part(seeds["order"], 1), train=_part(seeds["augment"], 2))


def _part(seed: int, index: int) -> jax.Array:
    return jax.random.split(jax.random.key(seed), 3)[index]


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What stays fixed while a run trains: the config, the compiled step, the data on the devices."""

    config: Config
    devices: tuple[jax.Device, ...]
    model: nn.Module
    num_train: int
    steps_per_epoch: int
    keys: RunKeys
    preprocess: Preprocess  # uint8 images -> the model's input (augmentation, normalisation)
    train_fn: Callable  # jaxrec.parallel.make_train_fn
    images: jax.Array   # the training split, uint8, replicated
    labels: jax.Array
    evaluator: Evaluator
    checkpoints: RunCheckpointer
    dataset: dict[str, Any]  # DataSplits.describe(), saved with every checkpoint
    metrics_path: Path


def train_and_evaluate(config: Config, workdir: str | Path) -> TrainState:
    """Trains `config.model` on `config.dataset`, evaluates it, and writes the run's outputs to `workdir`.

    If the workdir holds a checkpoint (and config.resume), the run continues from the latest one
    exactly as if it had not stopped. SIGTERM/SIGINT save a checkpoint and raise TrainingInterrupted.
    Returns the final train state (on the first device); the summary is in workdir/summary.json.
    """
    entered = time.time()
    check(config)
    cpu_devices.split_host(config, (config.batch_size,))
    devices = select_devices(config.num_devices)
    per_device_batch(config.batch_size, len(devices))  # refuse an uneven batch before loading data
    with claimed(workdir, config) as workdir:
        return train_in_workdir(config, workdir, devices, entered)


@contextlib.contextmanager
def claimed(workdir: str | Path, config: Config) -> Iterator[Path]:
    """Holds the workdir for the run (one training run per workdir) and starts over there if asked.
    In a multi-process run process 0 does both, and the others wait until it has (checking the
    contents themselves, they could catch it moving a run aside)."""
    with contextlib.ExitStack() as held:

        def claim_it() -> Path:
            path = held.enter_context(claim(workdir, config.force_workdir))
            start_over_if_asked(config, path)
            return path

        path = distributed.on_primary(claim_it, f"--workdir {workdir}")
        yield path or writable_folder(workdir)


def start_over_if_asked(config: Config, workdir: Path) -> None:
    """With --resume=false, moves the workdir's previous run (checkpoints and outputs) aside."""
    aside = None if config.resume else move_previous_run(workdir)
    if aside:
        log.warning("--resume=false: starting over; the previous run's files were moved to %s", aside)


def train_in_workdir(config: Config, workdir: Path, devices: list[jax.Device], entered: float) -> TrainState:
    """train_and_evaluate's loop, in a claimed workdir."""
    data = load_data(config)
    trainer = create_trainer(config, data, devices, workdir)
    state, run, resumed_from = restore_or_start(trainer, data)
    if distributed.is_primary():
        write_run_files(workdir, config, data, run.records)
    started = entered - run.elapsed_seconds  # wall time counts the run's earlier sessions too
    compiled, result = frozenset(), None  # call lengths this process has compiled; the last evaluation
    state = replicate(state, devices)
    with stop_on_signals() as stop:
        try:
            for _ in range(run.epoch, config.epochs):
                state, run, calls = train_epoch(trainer, state, run, stop, started)
                record = epoch_record(trainer, run, includes_compilation=not calls <= compiled)
                compiled |= calls
                if evaluation_due(config, run.epoch + 1):
                    result, eval_record = evaluate(trainer, state)
                    record.update(eval_record)
                run = finish_epoch(trainer, state, run, {**record, "wall_seconds": time.time() - started}, started)
                if agreed_stop(stop) and run.epoch < config.epochs:
                    raise interrupted(trainer, run, stop)
        finally:
            trainer.checkpoints.close()  # waits for saves in flight: an exit never leaves half a checkpoint
    write_summary(workdir, trainer, data, state, run, result, resumed_from, time.time() - started)
    distributed.barrier("jaxrec: outputs written")  # every process returns with the run's files in place
    return unreplicate(state)


def create_trainer(config: Config, data: DataSplits, devices: list[jax.Device], workdir: Path,
                   models: int = 1) -> Trainer:
    """Puts the data on the devices and builds the compiled train and eval steps; refuses a run that
    cannot fit in memory with `models` models trained side by side (a seed group's)."""
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"the training split has {len(data.train)} examples, fewer than one batch of "
                         f"{config.batch_size}; lower --batch_size")
    log.info("data %s: %d train / %d eval images of shape %s, %d classes; %d devices (%s%s), %d steps per epoch",
             data.name, len(data.train), len(data.eval), data.image_shape, data.num_classes, len(devices),
             devices[0].platform, f", {jax.process_count()} processes" if jax.process_count() > 1 else "",
             steps_per_epoch)
    preprocess = Preprocess(mean=data.mean, std=data.std, augment=config.augment)
    model = create_model(config, data.num_classes)
    memory.check_training_fits(model, data.image_shape, config.batch_size // jax.process_count(),
                               local_devices(devices),
                               data.train.images.nbytes + data.eval.images.nbytes, models)
    return Trainer(
        config=config, devices=tuple(devices), model=model, num_train=len(data.train), steps_per_epoch=steps_per_epoch,
        keys=RunKeys.from_config(config), preprocess=preprocess,
        train_fn=make_train_fn(preprocess, devices, config.label_smoothing, config.steps_loop),
        images=replicate(data.train.images, devices), labels=replicate(data.train.labels, devices),
        evaluator=Evaluator(create_model(config, data.num_classes, for_eval=True).apply, data.eval.images,
                            data.eval.labels, preprocess, devices, config.eval_batch_size),
        checkpoints=RunCheckpointer(workdir, config), dataset=data.describe(),
        metrics_path=workdir / "metrics.jsonl")


def restore_or_start(trainer: Trainer, data: DataSplits) -> tuple[TrainState, RunState, int | None]:
    """A fresh train state and run, or the latest checkpoint's; and the step resumed from (None if fresh)."""
    config = trainer.config
    state = create_train_state(config, trainer.model, data.image_shape, trainer.keys.init, trainer.steps_per_epoch)
    restored = trainer.checkpoints.restore_latest(state, trainer.dataset) if config.resume else None
    if restored is None:
        return state, RunState(), None
    run = restored.meta.run
    if run.epoch > config.epochs:
        raise InputError(f"the checkpoint in {trainer.checkpoints.directory} has trained {run.epoch} epochs, more "
                         f"than --epochs {config.epochs}; pass --epochs {run.epoch} or more, or another --workdir")
    log.info("resuming from the checkpoint at step %d (epoch %d, step %d of %d) in %s", run.step, run.epoch + 1,
             run.position, trainer.steps_per_epoch, trainer.checkpoints.directory)
    return restored.state, run, run.step


def write_run_files(workdir: Path, config: Config, data: DataSplits, records: tuple[Record, ...]) -> None:
    """config.json, dataset.json, and metrics.jsonl as far as the run has got (a lost epoch's line goes)."""
    config.save(workdir / "config.json")
    outputs.write_json(workdir / "dataset.json", data.describe())
    outputs.write_jsonl(workdir / "metrics.jsonl", records)


def train_epoch(trainer: Trainer, state: TrainState, run: RunState, stop: StopRequest,
                started: float) -> tuple[TrainState, RunState, frozenset[int]]:
    """Trains the rest of the current epoch, one device call at a time; saves when a checkpoint is due
    mid-epoch, and saves and raises TrainingInterrupted when a stop was requested. Also returns the
    lengths of the calls it made (each length is a program of its own, compiled on first use)."""
    config, steps = trainer.config, trainer.steps_per_epoch
    order = epoch_indices(trainer.keys.shuffle, run.epoch, trainer.num_train, config.batch_size)
    bar = tqdm(total=steps * config.batch_size, initial=run.position * config.batch_size, unit="img",
               unit_scale=True, desc=f"epoch {run.epoch + 1}/{config.epochs}",
               disable=not (config.progress and distributed.is_primary()), leave=False)
    calls = set()
    while run.position < steps:
        end = call_end(run, steps, config.steps_per_call, config.checkpoint_every_steps)
        before = run.position
        calls.add(end - before)
        state, run = train_call(trainer, state, run, order[run.position:end])
        bar.update((run.position - before) * config.batch_size)
        loss, accuracy = run.epoch_means()
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}")
        due = config.checkpoint_every_steps and run.step % config.checkpoint_every_steps == 0
        stopping = agreed_stop(stop)
        if run.position < steps and (due or stopping):
            save(trainer, state, run, started)
            if stopping:
                raise interrupted(trainer, run, stop)
    bar.close()
    return state, run, frozenset(calls)


def agreed_stop(stop: StopRequest) -> bool:
    """Whether to stop here. In a multi-process run, a signal to any one process stops them all after
    the same call (signals reach hosts at different moments): every process must ask at the same point."""
    signum = distributed.max_over_processes(stop.signum or 0)
    if signum and not stop.requested:
        stop.signum = signum  # this process stops for another's signal, and exits as that one does
    return bool(signum)


def call_end(run: RunState, steps_per_epoch: int, steps_per_call: int, checkpoint_every: int) -> int:
    """Where the device call starting at run.position ends: after steps_per_call steps, at the end of
    the epoch, or on a multiple of `checkpoint_every` global steps (a checkpoint is due there)."""
    end = min(run.position + steps_per_call, steps_per_epoch)
    if checkpoint_every:
        end = min(end, run.position + checkpoint_every - run.step % checkpoint_every)
    return end


def train_call(trainer: Trainer, state: TrainState, run: RunState,
               indices: np.ndarray) -> tuple[TrainState, RunState]:
    """One device call: len(indices) training steps. Stops the run if the loss is not finite."""
    start = time.perf_counter()
    shares = local_rows(split_over_devices(indices, len(trainer.devices)), trainer.devices)
    state, metrics = trainer.train_fn(state, trainer.images, trainer.labels, shares, trainer.keys.train)
    metrics = unreplicate(metrics)  # the same on every device (averaged over them all)
    losses = np.asarray(metrics["loss"])  # waits for the device: the timing is honest
    seconds = time.perf_counter() - start
    check_finite(losses, run.step)
    return state, run.after_steps(losses.tolist(), np.asarray(metrics["accuracy"]).tolist(), seconds)


def check_finite(losses: np.ndarray, first_step: int) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise FloatingPointError(
            f"training loss became {losses[bad[0]]} at step {step}; the run was stopped there. Lower "
            f"--learning_rate, add --warmup_epochs, or check the input data.")


def evaluation_due(config: Config, epoch: int) -> bool:
    """Whether epoch `epoch` (counted from 1) ends with an evaluation: every eval_every_epochs, and the last."""
    return epoch % config.eval_every_epochs == 0 or epoch == config.epochs


def epoch_record(trainer: Trainer, run: RunState, includes_compilation: bool) -> Record:
    """The finished epoch's line of metrics.jsonl, training part. includes_compilation: the epoch
    made a device call of a length this process had not run before (its time includes compiling)."""
    loss, accuracy = run.epoch_means()
    images = trainer.steps_per_epoch * trainer.config.batch_size
    return {"epoch": run.epoch + 1, "step": run.step, "train_loss": loss, "train_accuracy": accuracy,
            "train_seconds": run.train_seconds, "images_per_second": images / run.train_seconds,
            "includes_compilation": includes_compilation}


def evaluate(trainer: Trainer, state: TrainState) -> tuple[dict[str, Any], Record]:
    """The evaluation of the eval split, and its fields for metrics.jsonl."""
    start = time.perf_counter()
    result = trainer.evaluator(state.eval_variables)
    return result, {"test_loss": result["loss"], "test_accuracy": result["accuracy"],
                    "test_macro_f1": result["macro_f1"], "eval_seconds": time.perf_counter() - start}


def finish_epoch(trainer: Trainer, state: TrainState, run: RunState, record: Record, started: float) -> RunState:
    """Saves a checkpoint of the finished epoch, then appends its record to metrics.jsonl (so the
    file never holds an epoch a resume would not continue from) and logs it."""
    run = run.end_epoch(record)
    save(trainer, state, run, started, record.get("test_accuracy"))
    if distributed.is_primary():
        outputs.append_jsonl(trainer.metrics_path, record)
    log.info("epoch %d/%d: train loss %.4f acc %.4f | test loss %s acc %s | %.0f images/s",
             run.epoch, trainer.config.epochs, record["train_loss"], record["train_accuracy"],
             f"{record['test_loss']:.4f}" if "test_loss" in record else "-",
             f"{record['test_accuracy']:.4f}" if "test_accuracy" in record else "-", record["images_per_second"])
    return run


def save(trainer: Trainer, state: TrainState, run: RunState, started: float,
         test_accuracy: float | None = None) -> None:
    """Checkpoints the (replicated) state and the run (RunCheckpointer.save waits until it is on disk)."""
    run = dataclasses.replace(run, elapsed_seconds=time.time() - started)
    trainer.checkpoints.save(unreplicate(state), run, trainer.dataset, test_accuracy)


def interrupted(trainer: Trainer, run: RunState, stop: StopRequest) -> TrainingInterrupted:
    """The exception that tells the user how to resume (the checkpoint is already on disk: saves wait)."""
    return TrainingInterrupted(
        f"stopped by {stop.name} at step {run.step} (epoch {run.epoch + 1}, step {run.position} of "
        f"{trainer.steps_per_epoch}); checkpoint saved in {trainer.checkpoints.directory}. To resume, run the "
        f"same command again (same --workdir).", stop.signum)


def train_speed(records: tuple[Record, ...], images_per_epoch: int) -> float:
    """Training images/s over the epochs that include no compilation (all of them if none is left)."""
    timed = [r for r in records if not r.get("includes_compilation")] or list(records)
    return len(timed) * images_per_epoch / sum(r["train_seconds"] for r in timed)


def write_summary(workdir: Path, trainer: Trainer, data: DataSplits, state: TrainState, run: RunState,
                  result: dict[str, Any] | None, resumed_from: int | None, wall_seconds: float,
                  seeds_per_program: int = 1) -> None:
    """summary.json, curves.png and the final evaluation (eval.json, eval.md, confusion.png).
    seeds_per_program: how many models trained in the program (jaxrec.group); the images/s are one
    model's, the program's throughput is that many times more."""
    config, final = trainer.config, run.records[-1]
    result = result or trainer.evaluator(state.eval_variables)  # a finished run resumed: nothing was evaluated here
    predictions = trainer.evaluator.probabilities(state.eval_variables) if config.save_predictions else None
    if not distributed.is_primary():  # the evaluations above take every process; the files are written once
        return
    summary = {
        "test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
        "test_macro_f1": final["test_macro_f1"], "epochs": config.epochs, "steps": run.step,
        "train_images_per_second": train_speed(run.records, trainer.steps_per_epoch * config.batch_size),
        "param_count": count_params(unreplicate(state.params)), "seed": config.seed,
        "source_seeds": config.source_seeds(),
        "num_devices": len(trainer.devices), "processes": jax.process_count(),
        "seeds_per_program": seeds_per_program,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peak_host_memory_mb": host.peak_host_memory_mb(),
        "wall_seconds": wall_seconds, "resumed_from_step": resumed_from,
        "test_accuracy_per_epoch": [r.get("test_accuracy") for r in run.records],
        "dataset": data.describe(), "config": config.to_dict(), "versions": host.versions(),
        "machine": host.machine(), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    outputs.write_json(workdir / "summary.json", summary)
    outputs.plot_curves(run.records, workdir / "curves.png",
                        title=f"{config.model} on {config.dataset_tag}, seed {config.seed}")
    outputs.write_eval(workdir, report(result, data.class_names, config.top_k),
                       title=f"{config.model} on {config.dataset_tag}/{config.eval_split}, seed {config.seed}")
    if predictions is not None:
        outputs.write_predictions(workdir, predictions, data.eval.labels)
    log.info("done: test accuracy %.4f after %d epochs (%d steps); outputs in %s",
             summary["test_accuracy"], config.epochs, run.step, workdir)


__all__ = ["RunKeys", "Trainer", "train_and_evaluate"]
