"""Several seeds of one config trained side by side in one compiled program: `train_group(configs)`.

The configs differ only in their seeds and workdirs. Their K models are stacked on a model axis
inside the pmap over devices (`jaxrec.parallel.make_group_train_fn`): one copy of the data on each
device; each model has its own parameters, optimizer state, data order and augmentation. Each
member's workdir gets a normal run's outputs and checkpoints, written by the training loop's own
functions (`jaxrec.train`), so a member can be evaluated, predicted with or continued alone. With
model_axis 'loop' each member does exactly the arithmetic of `jaxrec train` with its config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxrec import cpu_devices, distributed
from jaxrec.checkpointing import RunCheckpointer
from jaxrec.config import MODEL_AXES, SOURCES, Config, check
from jaxrec.data import DataSplits, load_data
from jaxrec.data.pipeline import epoch_indices
from jaxrec.data.sources import split_is_seeded
from jaxrec.errors import InputError
from jaxrec.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from jaxrec.parallel import (local_rows, make_group_train_fn, make_unstack_fn, per_device_batch, replicate,
                             select_devices, split_models_over_devices, stack_states, unreplicate)
from jaxrec.run_state import RunState
from jaxrec.state import TrainState
from jaxrec.train import (RunKeys, Trainer, agreed_stop, call_end, check_finite, claimed, create_trainer,
                          epoch_record, evaluate, evaluation_due, finish_epoch, restore_or_start, save,
                          write_run_files, write_summary)

log = logging.getLogger(__name__)

# What may differ between the members of a group: the seeds and where each run is written.
MEMBER_FIELDS = ("seed", *(f"{source}_seed" for source in SOURCES), "workdir")


def check_group(configs: Sequence[Config], model_axis: str = "loop") -> list[Config]:
    """The configs, if they can train in one program: the same settings but for seeds and workdirs,
    distinct workdirs, and one data split (a seeded split of an image folder differs per split seed)."""
    if not configs:
        raise InputError("a group of seeds needs at least one config")
    if model_axis not in MODEL_AXES:
        raise InputError(f"--model_axis {model_axis!r}: choose one of {', '.join(MODEL_AXES)}")
    lead, other = configs[0].to_dict(), [c.to_dict() for c in configs[1:]]
    different = sorted({k for c in other for k, v in c.items() if k not in MEMBER_FIELDS and v != lead[k]})
    if different:
        raise InputError(f"seeds trained in one program must share every setting but their seeds; "
                         f"{', '.join(different)} differ")
    if len({c.workdir for c in configs}) < len(configs):
        raise InputError("seeds trained in one program need a workdir each")
    if len({c.source_seeds()["split"] for c in configs}) > 1 and split_is_seeded(configs[0]):
        raise InputError(f"{configs[0].dataset} has no split folders, so each split seed draws its own eval split "
                         f"and the seeds cannot share one copy of the data; use --seeds_per_program 1")
    return list(configs)


@dataclasses.dataclass(frozen=True)
class Group:
    """What stays fixed while a group trains: one Trainer per member (sharing the data on the devices
    and the evaluator), the compiled group step, and the members' training keys."""

    members: tuple[Trainer, ...]
    train_fn: Callable  # jaxrec.parallel.make_group_train_fn
    unstack: Callable   # jaxrec.parallel.make_unstack_fn: stacked state -> the members' states
    rngs: jax.Array     # the members' training (augmentation) keys, [K]

    @property
    def lead(self) -> Trainer:
        return self.members[0]


def train_group(configs: Sequence[Config], model_axis: str = "loop") -> None:
    """Trains and evaluates every config in one program and writes each run's outputs to its workdir.

    Resumes from the members' checkpoints (all at one step); SIGTERM/SIGINT save every member and
    raise TrainingInterrupted.
    """
    entered = time.time()
    configs = check_group([check(config) for config in configs], model_axis)
    cpu_devices.split_host(configs[0], (configs[0].batch_size,))
    devices = select_devices(configs[0].num_devices)
    per_device_batch(configs[0].batch_size, len(devices))
    with contextlib.ExitStack() as held:
        for config in configs:  # one training run per workdir
            held.enter_context(claimed(config.workdir, config))
        train_group_in_workdirs(configs, devices, model_axis, entered)


def train_group_in_workdirs(configs: list[Config], devices: list[jax.Device], model_axis: str, entered: float) -> None:
    """train_group's loop, in claimed workdirs."""
    data = load_data(configs[0])
    group = create_group(configs, data, devices, model_axis)
    states, runs, resumed_from = restore_or_start_group(group, data)
    for member, run in zip(group.members, runs):
        if distributed.is_primary():
            write_run_files(Path(member.config.workdir), member.config, data, run.records)
    started = entered - runs[0].elapsed_seconds
    compiled, results = frozenset(), [None] * len(configs)
    state = replicate(stack_states(states), devices)
    epochs = configs[0].epochs
    with stop_on_signals() as stop:
        try:
            for _ in range(runs[0].epoch, epochs):
                state, runs, calls = train_group_epoch(group, state, runs, stop, started)
                runs, results = finish_group_epoch(group, state, runs, results, not calls <= compiled, started)
                compiled |= calls
                if agreed_stop(stop) and runs[0].epoch < epochs:
                    raise group_interrupted(group, runs[0], stop)
        finally:
            for member in group.members:  # waits for saves in flight
                member.checkpoints.close()
    wall_seconds = time.time() - started
    for member, member_state, run, result in zip(group.members, group.unstack(state), runs, results):
        write_summary(Path(member.config.workdir), member, data, member_state, run, result, resumed_from,
                      wall_seconds, seeds_per_program=len(configs))
    distributed.barrier("jaxrec: outputs written")


def create_group(configs: Sequence[Config], data: DataSplits, devices: list[jax.Device], model_axis: str) -> Group:
    """One Trainer per member (the data and evaluator of the first, shared) and the compiled group step."""
    lead = create_trainer(configs[0], data, devices, Path(configs[0].workdir), models=len(configs))
    members = (lead, *(dataclasses.replace(
        lead, config=config, keys=RunKeys.from_config(config), checkpoints=RunCheckpointer(config.workdir, config),
        metrics_path=Path(config.workdir) / "metrics.jsonl") for config in configs[1:]))
    return Group(members=members,
                 train_fn=make_group_train_fn(lead.preprocess, devices, len(members), model_axis,
                                              configs[0].label_smoothing, configs[0].steps_loop),
                 unstack=make_unstack_fn(len(members), devices),
                 rngs=jax.numpy.stack([m.keys.train for m in members]))


def restore_or_start_group(group: Group, data: DataSplits) -> tuple[list[TrainState], list[RunState], int | None]:
    """Every member's fresh or restored state and run. They must stand at one step (jaxrec.study puts
    only seeds whose checkpoints reached the same step into one program); seeds with other progress
    are refused rather than sent back, which would throw training away."""
    states, runs, resumed = zip(*(restore_or_start(member, data) for member in group.members))
    if len({run.step for run in runs}) > 1:
        steps = ", ".join(f"{Path(m.config.workdir).name}: {run.step}" for m, run in zip(group.members, runs))
        raise InputError(f"the seeds given to one program have trained to different steps ({steps}); train them "
                         f"one at a time (--seeds_per_program 1) to keep each one's progress")
    return list(states), list(runs), resumed[0]


def train_group_epoch(group: Group, state: TrainState, runs: list[RunState], stop: StopRequest,
                      started: float) -> tuple[TrainState, list[RunState], frozenset[int]]:
    """The rest of the current epoch for every member, one device call at a time (as train.train_epoch)."""
    config, steps, run = group.lead.config, group.lead.steps_per_epoch, runs[0]
    orders = np.stack([epoch_indices(m.keys.shuffle, run.epoch, m.num_train, config.batch_size)
                       for m in group.members], axis=1)  # [steps, K, batch]
    images_per_step = config.batch_size * len(group.members)
    bar = tqdm(total=steps * images_per_step, initial=run.position * images_per_step, unit="img", unit_scale=True,
               desc=f"epoch {run.epoch + 1}/{config.epochs}, {len(group.members)} models",
               disable=not (config.progress and distributed.is_primary()), leave=False)
    calls = set()
    while runs[0].position < steps:
        before = runs[0].position
        end = call_end(runs[0], steps, config.steps_per_call, config.checkpoint_every_steps)
        calls.add(end - before)
        state, runs = group_call(group, state, runs, orders[before:end])
        bar.update((end - before) * images_per_step)
        due = config.checkpoint_every_steps and runs[0].step % config.checkpoint_every_steps == 0
        stopping = agreed_stop(stop)
        if runs[0].position < steps and (due or stopping):
            save_group(group, state, runs, started)
            if stopping:
                raise group_interrupted(group, runs[0], stop)
    bar.close()
    return state, runs, frozenset(calls)


def group_call(group: Group, state: TrainState, runs: list[RunState],
               indices: np.ndarray) -> tuple[TrainState, list[RunState]]:
    """One device call: len(indices) steps of every member. Stops if a member's loss is not finite."""
    start = time.perf_counter()
    devices = group.lead.devices
    shares = local_rows(split_models_over_devices(indices, len(devices)), devices)
    state, metrics = group.train_fn(state, group.lead.images, group.lead.labels, shares, group.rngs)
    metrics = unreplicate(metrics)
    losses = np.asarray(metrics["loss"])  # [steps, K]; waits for the device
    seconds = time.perf_counter() - start
    accuracies = np.asarray(metrics["accuracy"])
    for k, member in enumerate(group.members):
        try:
            check_finite(losses[:, k], runs[0].step)
        except FloatingPointError as err:
            raise FloatingPointError(f"{member.config.workdir}: {err}") from None
    return state, [run.after_steps(losses[:, k].tolist(), accuracies[:, k].tolist(), seconds)
                   for k, run in enumerate(runs)]


def finish_group_epoch(group: Group, state: TrainState, runs: list[RunState], results: list[Any],
                       includes_compilation: bool, started: float) -> tuple[list[RunState], list[Any]]:
    """Each member's epoch record, evaluation when due, metrics.jsonl line and checkpoint."""
    new_runs, new_results = [], []
    for member, member_state, run, result in zip(group.members, group.unstack(state), runs, results):
        record = epoch_record(member, run, includes_compilation)
        if evaluation_due(member.config, run.epoch + 1):
            result, eval_record = evaluate(member, member_state)
            record.update(eval_record)
        new_runs.append(finish_epoch(member, member_state, run, {**record, "wall_seconds": time.time() - started},
                                     started))
        new_results.append(result)
    return new_runs, new_results


def save_group(group: Group, state: TrainState, runs: list[RunState], started: float) -> None:
    for member, member_state, run in zip(group.members, group.unstack(state), runs):
        save(member, member_state, run, started)


def group_interrupted(group: Group, run: RunState, stop: StopRequest) -> TrainingInterrupted:
    """The exception that tells the user how to resume (every member's checkpoint is on disk: saves wait)."""
    return TrainingInterrupted(
        f"stopped by {stop.name} at step {run.step} (epoch {run.epoch + 1}, step {run.position} of "
        f"{group.lead.steps_per_epoch}); {len(group.members)} seeds saved, each in its workdir's checkpoints. To "
        f"resume, run the same command again.", stop.signum)


__all__ = ["Group", "MEMBER_FIELDS", "check_group", "train_group"]
