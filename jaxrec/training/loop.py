"""The training loop (docs/design.md, "One loop"): `train_and_evaluate(config, workdir)` for one model,
`train_group(configs)` for several seeds of one config in one compiled program."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from tqdm.auto import tqdm

from jaxrec.config import EXECUTION_FIELDS, MEMBER_FIELDS, MODEL_AXES, Config
from jaxrec.core.metrics import report
from jaxrec.core.optim import total_steps
from jaxrec.core.parallel import Program, make_program, per_device_batch, replicate, select_devices, unreplicate
from jaxrec.core.pipeline import Preprocess, epoch_indices
from jaxrec.core.run_state import Record, RunState
from jaxrec.core.state import TrainState, create_train_state, init_sample
from jaxrec.core.steps import Objective
from jaxrec.data import DataSplits
from jaxrec.data.sources import reads_under, split_is_seeded
from jaxrec.data.stream import StreamError
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.models import count_params, create_model
from jaxrec.models.kernels import resolved_dtype
from jaxrec.run import outputs
from jaxrec.run.checkpoints import DATA_IDENTITY, RunCheckpointer
from jaxrec.run.workdir import claim, move_previous_run, writable_folder
from jaxrec.run.writers import Writers, open_writers
from jaxrec.runtime import distributed, host
from jaxrec.runtime.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from jaxrec.runtime.setup import prepare
from jaxrec.training.feed import DeviceFeed, TrainStream
from jaxrec.training.inputs import open_data

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunKeys:
    """The run's random keys, derived from the config's seeds (so never saved)."""

    init: jax.Array     # parameter initialisation
    shuffle: jax.Array  # the data order: folded with the epoch
    train: jax.Array    # augmentation: folded with the step, then the example

    @classmethod
    def from_config(cls, config: Config) -> "RunKeys":
        """Each key from its own source's seed; one seed for all (a plain --seed) gives split(key(seed), 3)."""
        seeds = config.source_seeds()
        return cls(init=_part(seeds["init"], 0), shuffle=_part(seeds["order"], 1), train=_part(seeds["augment"], 2))


def _part(seed: int, index: int) -> jax.Array:
    return jax.random.split(jax.random.key(seed), 3)[index]


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of a program; its metric writers open with its run files (open_run_files)."""

    config: Config
    keys: RunKeys
    workdir: Path
    checkpoints: RunCheckpointer


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What stays fixed while a program of one or more models trains."""

    members: tuple[Member, ...]
    model: nn.Module
    data: DataSplits  # its describe() is saved with every checkpoint
    steps_per_epoch: int
    preprocess: Preprocess  # uint8 images -> the model's input (augmentation, normalisation)
    program: Program    # jaxrec.core.parallel.make_program
    rngs: jax.Array     # the members' training (augmentation) keys, [K]
    inputs: DeviceFeed | TrainStream  # the training split on the devices, or its batches read as calls need them
    evaluator: Evaluator

    @property
    def config(self) -> Config:
        """The first member's config (the members share every setting but their seeds)."""
        return self.members[0].config

    @property
    def total_steps(self) -> int:
        """Training steps of the whole run (a fractional --epochs trains part of the last epoch), or
        --max_steps if fewer (the schedule stays that of --epochs)."""
        scheduled = total_steps(self.config.optimisation, self.steps_per_epoch)
        return min(scheduled, self.config.max_steps) if self.config.max_steps else scheduled

    @property
    def epochs(self) -> int:
        """Epochs the loop runs, the last one perhaps partial."""
        return -(-self.total_steps // self.steps_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        """Training steps of epoch `epoch` (counted from 0)."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The examples of every step of epoch `epoch`, [steps_per_epoch, K, batch] (each model its own)."""
        return np.stack([epoch_indices(m.keys.shuffle, epoch, len(self.data.train), self.config.batch_size)
                         for m in self.members], axis=1)

    def close(self) -> None:
        """Closes the readers and the checkpointers, which wait for saves in flight: no exit leaves half a save."""
        self.inputs.close()
        self.evaluator.close()
        for member in self.members:
            member.checkpoints.close()


def train_and_evaluate(config: Config, workdir: str | Path) -> TrainState:
    """Trains and evaluates `config` in `workdir`; returns the final train state (the first device's). Resumes from
    the latest checkpoint; SIGTERM/SIGINT save one and raise TrainingInterrupted (docs/checkpoints.md)."""
    return train_in_workdirs([config], [workdir])[0]


def train_group(configs: Sequence[Config], model_axis: str = "loop") -> list[TrainState]:
    """`train_and_evaluate` for configs that differ only in seeds and workdirs, in one program (docs/studies.md,
    Many seeds in one program); returns the final train states."""
    return train_in_workdirs(configs, [config.workdir for config in configs], model_axis)


def check_group(configs: Sequence[Config], model_axis: str = "loop") -> list[Config]:
    """The configs, if they can train in one program; else an InputError saying why not."""
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
    if len(configs) > 1 and configs[0].input == "stream":  # each model reads its own order: one stream cannot
        raise InputError(f"--input stream trains one model per program, and this one has {len(configs)}; use "
                         f"--seeds_per_program 1, or --input device where the data fits")
    if len({c.source_seeds()["split"] for c in configs}) > 1 and split_is_seeded(configs[0].data_plan):
        raise InputError(f"{configs[0].dataset} has no split folders, so each split seed draws its own eval split "
                         f"and the seeds cannot share one copy of the data; use --seeds_per_program 1")
    return list(configs)


def start_over_if_asked(configs: Sequence[Config], workdirs: Sequence[Path]) -> None:
    """With --resume=false, moves each workdir's previous run (checkpoints and outputs) aside: on process 0, once
    the data and settings have passed every check, so a refused start-over leaves the run where it was."""
    def move() -> None:
        for config, workdir in zip(configs, workdirs):
            aside = None if config.resume else move_previous_run(workdir)
            if aside:
                log.warning("--resume=false: starting over; the previous run's files were moved to %s", aside)

    distributed.on_primary(move, "--resume=false")


@dataclasses.dataclass(frozen=True)
class Session:
    """What one session of the loop (a start, or a resume) holds beside the train state and the runs; `started`
    counts the run's earlier sessions in, and `resumed_from` is None for a fresh start."""

    writers: list[Writers]
    stop: StopRequest
    started: float
    resumed_from: int | None


def train_in_workdirs(configs: Sequence[Config], workdirs: Sequence[str | Path],
                      model_axis: str = "loop") -> list[TrainState]:
    """The loop, each config in its workdir. Refuses what cannot train (prepare, which also splits the CPU into devices
    and joins the processes; check_group) and claims the workdirs before any data is loaded or file written."""
    entered = time.time()
    configs = check_group([prepare(config) for config in configs], model_axis)
    for config, workdir in zip(configs, workdirs):
        if reads_under(config.data_plan, workdir):  # its outputs would become images of the next run's data
            raise InputError(f"--workdir {workdir} is inside the data set {config.dataset}, whose folders are read as "
                             f"classes; choose a --workdir outside it")
    devices = select_devices(configs[0].num_devices)
    per_device_batch(configs[0].batch_size, len(devices))
    with contextlib.ExitStack() as held:
        paths = []
        for workdir, config in zip(workdirs, configs):
            # Process 0 claims it and the others wait (checking it themselves, they could catch process 0 moving a
            # run aside).
            path = distributed.on_primary(lambda: held.enter_context(claim(workdir, config.force_workdir)),
                                          f"--workdir {workdir}")
            paths.append(path or writable_folder(workdir))
        return train_claimed(configs, paths, devices, model_axis, entered)


def train_claimed(configs: list[Config], workdirs: list[Path], devices: list[jax.Device], model_axis: str,
                  entered: float) -> list[TrainState]:
    """Loads the data, trains every epoch (or stops at a signal, saved), evaluates and writes the outputs."""
    data = open_data(configs[0], len(configs), devices)
    described = data.describe()
    distributed.check_agreement("data set", {k: described[k] for k in (*DATA_IDENTITY, "eval_examples")},
                                "give every process the same --dataset, with the same files")
    start_over_if_asked(configs, workdirs)  # open_data has refused what this data cannot train
    trainer = create_trainer(configs, workdirs, data, devices, model_axis)
    # Every way out closes the readers and checkpointers (again, after the final evaluations reopened a streamed
    # split's reader: closing twice does nothing).
    with contextlib.closing(trainer):
        states, runs, resumed_from = restore_or_start(trainer)
        if resumed_from == trainer.total_steps and outputs_written(trainer, runs[0].step):
            log.info("the outputs in %s are this finished run's, with these settings: nothing to do (jaxrec evaluate "
                     "scores it again; --resume=false trains it anew)",
                     ", ".join(str(m.workdir) for m in trainer.members))
            return states
        writers = [open_run_files(member, data, run, resumed_from) for member, run in zip(trainer.members, runs)]
        compiled, results = frozenset(), [None] * len(configs)  # call lengths compiled here; the last evaluations
        state = trainer.program.stack(states)
        with stop_on_signals(processes=jax.process_count()) as stop:
            # Wall time counts the run's earlier sessions too.
            session = Session(writers, stop, entered - runs[0].elapsed_seconds, resumed_from)
            try:
                for _ in range(runs[0].epoch, trainer.epochs):
                    state, runs, calls = train_epoch(trainer, state, runs, session)
                    runs, results = finish_epoch(trainer, state, runs, results, session, not calls <= compiled)
                    compiled |= calls
                    if agreed_stop(stop) and runs[0].epoch < trainer.epochs:
                        raise interrupted(trainer, runs[0], stop)
            finally:
                trainer.close()  # waits for the saves in flight before the summaries are written
                for writer in writers:
                    writer.close()
        finals = trainer.program.unstack(state)
        for member, final, run, result in zip(trainer.members, finals, runs, results):
            write_summary(trainer, member, final, run, result, session)
        distributed.barrier("jaxrec: outputs written")  # every process returns with the run's files in place
        return [unreplicate(final) for final in finals]


def outputs_written(trainer: Trainer, step: int) -> bool:
    """Whether process 0 finds each member's summary.json at `step` with its config as now, EXECUTION_FIELDS aside
    (a rerun then rewrites nothing: docs/checkpoints.md, Resume)."""
    def what(config: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in config.items() if name not in EXECUTION_FIELDS}

    def written(member: Member) -> bool:
        try:
            summary = json.loads((member.workdir / "summary.json").read_text())
        except (OSError, ValueError):
            return False
        now = json.loads(json.dumps(member.config.to_dict()))
        return summary.get("steps") == step and what(summary.get("config") or {}) == what(now)

    return bool(distributed.max_over_processes(int(distributed.is_primary() and all(map(written, trainer.members)))))


def create_trainer(configs: Sequence[Config], workdirs: Sequence[Path], data: DataSplits,
                   devices: list[jax.Device], model_axis: str = "loop") -> Trainer:
    """Puts the training split on the devices (or streams it) and builds the compiled program and the evaluator
    (open_data has refused a split smaller than one batch)."""
    config, models = configs[0], len(configs)
    steps_per_epoch = len(data.train) // config.batch_size
    log.info("data %s: %d train / %d eval images of shape %s, %d classes; %d device%s (%s%s), %d steps per epoch%s",
             data.name, len(data.train), len(data.eval), data.image_shape, data.num_classes, len(devices),
             "s" if len(devices) > 1 else "", devices[0].platform,
             f", {jax.process_count()} processes" if jax.process_count() > 1 else "", steps_per_epoch,
             f"; {models} models in one program" if models > 1 else "")
    preprocess = Preprocess.of(config.optimisation, data.mean, data.std, steps_per_epoch)
    model = create_model(config, data.num_classes)
    members = tuple(Member(config=c, keys=RunKeys.from_config(c), workdir=Path(w), checkpoints=RunCheckpointer(w, c))
                    for c, w in zip(configs, workdirs))
    objective = Objective.of(config.optimisation, total_steps(config.optimisation, steps_per_epoch))
    program = make_program(preprocess, devices, (models, model_axis), objective, config.steps_loop)
    eval_apply = create_model(config, data.num_classes, for_eval=True).apply
    trainer = Trainer(
        members=members, model=model, data=data,
        steps_per_epoch=steps_per_epoch, preprocess=preprocess, program=program,
        rngs=jax.numpy.stack([m.keys.train for m in members]),
        inputs=None if data.streamed else DeviceFeed(replicate(data.train.images, devices),
                                                     replicate(data.train.labels, devices)),
        evaluator=Evaluator(eval_apply, data.eval, preprocess, devices, config.eval_batch_size, config.data_workers))
    if not data.streamed:
        return trainer
    return dataclasses.replace(trainer, inputs=TrainStream(
        data.train, lambda epoch: trainer.order(epoch)[:, 0], trainer.steps_in_epoch, devices, config.batch_size,
        config.data_workers))


def restore_or_start(trainer: Trainer) -> tuple[list[TrainState], list[RunState], int | None]:
    """Every member's fresh or restored state and run, and the step resumed from (None if fresh). They must stand at
    one step (a study groups only such seeds): others are refused rather than sent back, which would lose training."""
    states, runs, resumed = zip(*(restore_or_start_member(trainer, member) for member in trainer.members))
    if len({run.step for run in runs}) > 1:
        steps = ", ".join(f"{m.workdir.name}: {run.step}" for m, run in zip(trainer.members, runs))
        raise InputError(f"the seeds given to one program have trained to different steps ({steps}); train them "
                         f"one at a time (--seeds_per_program 1) to keep each one's progress")
    return list(states), list(runs), resumed[0]


def restore_or_start_member(trainer: Trainer, member: Member) -> tuple[TrainState, RunState, int | None]:
    """A fresh train state and run, or the latest checkpoint's; and the step resumed from (None if fresh)."""
    config, data, count = member.config, trainer.data, getattr(trainer.model, "init_examples", 0)
    sample = init_sample(len(data.train), count, member.keys.init) if count else None  # data-dependent init's images
    images = None if sample is None else np.asarray(trainer.preprocess.normalize(data.train.take(sample)))
    state = create_train_state(config.optimisation, trainer.model, data.image_shape, member.keys.init,
                               trainer.steps_per_epoch, images)
    restored = member.checkpoints.restore_latest(state, data.describe()) if config.resume else None
    if restored is None:
        return state, RunState(), None
    run = restored.meta.run
    if run.step > trainer.total_steps:
        limit = (f"--max_steps {config.max_steps}" if trainer.total_steps == config.max_steps else
                 f"--epochs {config.epochs} ({trainer.total_steps} steps)")
        raise InputError(f"the checkpoint in {member.checkpoints.directory} has trained {run.step} steps ({run.epoch} "
                         f"epochs), more than {limit}; pass a larger {limit.split()[0]}, or another --workdir")
    if run.step == trainer.total_steps:  # a finished run: epoch + 1 would name one past its last
        log.info("resuming from the checkpoint at step %d in %s, the run's last: nothing left to train", run.step,
                 member.checkpoints.directory)
    else:
        log.info("resuming from the checkpoint at step %d (epoch %d, step %d of %d) in %s", run.step, run.epoch + 1,
                 run.position, trainer.steps_per_epoch, member.checkpoints.directory)
    return restored.state, run, run.step


def open_run_files(member: Member, data: DataSplits, run: RunState, resumed_from: int | None) -> Writers:
    """Writes config.json and dataset.json and opens the metric writers (docs/design.md, Metric writers)."""
    primary = distributed.is_primary()
    if primary:
        member.config.save(member.workdir / "config.json")
        outputs.write_json(member.workdir / "dataset.json", data.describe())
    return open_writers(member.workdir, run, resumed_from is not None, member.config.tensorboard, primary)


def train_epoch(trainer: Trainer, state: TrainState, runs: list[RunState],
                session: Session) -> tuple[TrainState, list[RunState], frozenset[int]]:
    """Trains the rest of the epoch for every member, one device call at a time; saves mid-epoch where a checkpoint
    is due or on a stop (then raises TrainingInterrupted). Also returns its calls' lengths (a new length compiles)."""
    config, run = trainer.config, runs[0]
    steps = trainer.steps_in_epoch(run.epoch)
    orders = trainer.order(run.epoch)  # [steps, K, batch]
    models = len(trainer.members)
    images_per_step = config.batch_size * models
    bar = tqdm(total=steps * images_per_step, initial=run.position * images_per_step, unit="img", unit_scale=True,
               desc=f"epoch {run.epoch + 1}/{trainer.epochs}" + (f", {models} models" if models > 1 else ""),
               disable=not (config.progress and distributed.is_primary()), leave=False)
    plan = call_plan(run, steps, config.steps_per_call, config.checkpoint_every_steps)
    feed = trainer.inputs.for_epoch(run.epoch, plan, trainer.program)
    for before, end in plan:
        try:
            state, runs = train_call(trainer, state, runs, session.writers, orders[before:end], feed)
        except StreamError as err:
            raise stream_failed(trainer, state, runs, session, err) from err
        bar.update((end - before) * images_per_step)
        loss, accuracy = np.mean([r.epoch_means() for r in runs], axis=0)
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}")
        due = config.checkpoint_every_steps and runs[0].step % config.checkpoint_every_steps == 0
        stopping = agreed_stop(session.stop)
        if runs[0].position < steps and (due or stopping):
            save(trainer, trainer.program.unstack(state), runs, session)
            if stopping:
                raise interrupted(trainer, runs[0], session.stop)
    bar.close()
    return state, runs, frozenset(end - before for before, end in plan)


def stream_failed(trainer: Trainer, state: TrainState, runs: list[RunState], session: Session,
                  err: StreamError) -> Exception:
    """Saves where the run stands (after its last whole call) when reading a streamed batch failed, and returns the
    error saying how to go on; or the interruption, if a signal came too (to the process group, workers included)."""
    save(trainer, trainer.program.unstack(state), runs, session)
    if session.stop.signum:
        return interrupted(trainer, runs[0], session.stop)
    return StreamError(f"{str(err).rstrip('.')}. Training stopped at step {runs[0].step} and saved a checkpoint "
                       f"there; run the same command again to continue from it.")


def agreed_stop(stop: StopRequest) -> bool:
    """Whether to stop here (a signal to any process stops all: docs/multi_host.md); every process asks at one point."""
    signum = distributed.max_over_processes(stop.signum or 0)
    if signum and not stop.signum:
        stop.signum = signum  # this process stops for another's signal, and exits as that one does
    return bool(signum)


def call_plan(run: RunState, steps_per_epoch: int, steps_per_call: int, checkpoint_every: int) -> list[tuple[int, int]]:
    """The device calls that finish the epoch from run.position, as (start, end) positions; a call also ends where
    a checkpoint is due (a multiple of `checkpoint_every` global steps)."""
    plan, position, step = [], run.position, run.step
    while position < steps_per_epoch:
        end = min(position + steps_per_call, steps_per_epoch)
        if checkpoint_every:
            end = min(end, position + checkpoint_every - step % checkpoint_every)
        plan.append((position, end))
        position, step = end, step + end - position
    return plan


def train_call(trainer: Trainer, state: TrainState, runs: list[RunState], writers: list[Writers],
               indices: np.ndarray, feed: DeviceFeed | TrainStream) -> tuple[TrainState, list[RunState]]:
    """One device call: len(indices) training steps of every member (indices [steps, K, batch]), fed by `feed`,
    which prepares the next call while this one runs. Stops the run if a member's loss is not finite."""
    start = time.perf_counter()
    program = trainer.program
    state, metrics = program.fn(state, *feed.take(), program.shares(indices), program.keys(trainer.rngs))
    feed.advance()
    metrics = program.per_model(metrics)  # [steps, K], the same on every device; waits for it: honest timing
    seconds = time.perf_counter() - start
    losses, accuracies = metrics["loss"], metrics["accuracy"]
    for k, member in enumerate(trainer.members):
        bad = np.flatnonzero(~np.isfinite(losses[:, k]))
        if bad.size:
            where = f"{member.workdir}: " if len(trainer.members) > 1 else ""
            raise FloatingPointError(
                f"{where}training loss became {losses[bad[0], k]} at step {runs[0].step + int(bad[0]) + 1}; the run "
                f"was stopped there. Lower --learning_rate, add --warmup_epochs, or check the input data.")
    runs = [run.after_steps(losses[:, k].tolist(), accuracies[:, k].tolist(), seconds) for k, run in enumerate(runs)]
    for run, writer in zip(runs, writers):
        writer.write_train(run.step, run.call_loss, run.call_accuracy)
    return state, runs


def finish_epoch(trainer: Trainer, state: TrainState, runs: list[RunState], results: list[Any], session: Session,
                 includes_compilation: bool) -> tuple[list[RunState], list[Any]]:
    """Each member's epoch record and evaluation when due; saves, and only then writes the records (metrics.jsonl
    never holds an epoch a resume would not continue from). Returns the ended runs and the last evaluations."""
    member_states = trainer.program.unstack(state)
    records, new_results = [], []
    for member, member_state, run, result in zip(trainer.members, member_states, runs, results):
        loss, accuracy = run.epoch_means()
        images = run.position * trainer.config.batch_size
        record = Record(epoch=run.epoch + 1, step=run.step, train_loss=loss, train_accuracy=accuracy,
                        train_seconds=run.train_seconds, images_per_second=images / run.train_seconds,
                        includes_compilation=includes_compilation)
        if record.epoch % member.config.eval_every_epochs == 0 or record.epoch == trainer.epochs:
            start = time.perf_counter()
            try:
                result = trainer.evaluator(member_state.eval_variables)
            except StreamError as err:  # the epoch's training is kept: a rerun starts with this evaluation
                raise stream_failed(trainer, state, runs, session, err) from err
            record = record.replace(test_loss=result["loss"], test_accuracy=result["accuracy"],
                                    test_macro_f1=result["macro_f1"], eval_seconds=time.perf_counter() - start)
        records.append(record.replace(wall_seconds=time.time() - session.started))
        new_results.append(result)
    ended = [run.end_epoch(record) for run, record in zip(runs, records)]
    # A run that ends inside an epoch (--max_steps, a fractional --epochs) is saved there, not at the
    # epoch's end: a longer run resumed from it then finishes this epoch, as a straight one does.
    within = runs[0].position < trainer.steps_per_epoch
    save(trainer, member_states, runs if within else ended, session, [record.test_accuracy for record in records])
    for record, writer in zip(records, session.writers):
        writer.write_epoch(record)
        log.info("epoch %d/%d: train loss %.4f acc %.4f | test loss %s acc %s | %.0f images/s", record.epoch,
                 trainer.epochs, record.train_loss, record.train_accuracy,
                 "-" if record.test_loss is None else f"{record.test_loss:.4f}",
                 "-" if record.test_accuracy is None else f"{record.test_accuracy:.4f}", record.images_per_second)
    return ended, new_results


def save(trainer: Trainer, member_states: Sequence[TrainState], runs: list[RunState], session: Session,
         test_accuracies: Sequence[float | None] | None = None) -> None:
    """Checkpoints every member's (replicated) state and run, after flushing the writers (docs/design.md, Metric
    writers). A step already saved is kept (a rerun of a run that ended inside an epoch comes back to it)."""
    for writer in session.writers:
        writer.flush()
    accuracies = test_accuracies or [None] * len(runs)
    for member, member_state, run, accuracy in zip(trainer.members, member_states, runs, accuracies):
        if run.step in member.checkpoints.manager.all_steps():  # Orbax's finished saves
            continue
        run = dataclasses.replace(run, elapsed_seconds=time.time() - session.started)
        member.checkpoints.save(unreplicate(member_state), run, trainer.data.describe(), accuracy)


def interrupted(trainer: Trainer, run: RunState, stop: StopRequest) -> TrainingInterrupted:
    """The exception that tells the user how to resume (the checkpoints are already on disk: saves wait)."""
    members = trainer.members
    saved = (f"checkpoint saved in {members[0].checkpoints.directory}" if len(members) == 1 else
             f"{len(members)} seeds saved, each in its workdir's checkpoints")
    return TrainingInterrupted(
        f"stopped by {signal.Signals(stop.signum).name} at step {run.step} (epoch {run.epoch + 1}, step "
        f"{run.position} of {trainer.steps_per_epoch}); {saved}. To resume, run the same command again"
        f"{' (same --workdir)' if len(members) == 1 else ''}.", stop.signum)


def train_speed(records: Sequence[Record]) -> float:
    """Training images/s over the epochs that include no compilation (all of them if none is left)."""
    timed = [r for r in records if not r.includes_compilation] or list(records)
    return sum(r.images_per_second * r.train_seconds for r in timed) / sum(r.train_seconds for r in timed)


def write_summary(trainer: Trainer, member: Member, state: TrainState, run: RunState, result: dict[str, Any] | None,
                  session: Session) -> None:
    """Writes one member's summary.json, curves.png and eval files; state: replicated; result: its last evaluation
    (None: none this session). Its images/s are one model's, not the program's."""
    config, data, final = member.config, trainer.data, run.records[-1]
    result = result or trainer.evaluator(state.eval_variables)  # a finished run resumed: nothing was evaluated here
    # The run's own scores are with its test-time augmentation (--tta); the per-epoch ones are without.
    augmented = trainer.evaluator(state.eval_variables, config.tta) if config.tta else None
    scored = augmented or result
    predictions = trainer.evaluator.probabilities(state.eval_variables, config.tta) if config.save_predictions else None
    if not distributed.is_primary():  # the evaluations above take every process; the files are written once
        return
    without_tta = {} if augmented is None else {
        "tta": config.tta, "test_accuracy_without_tta": final.test_accuracy, "test_loss_without_tta": final.test_loss,
        "test_macro_f1_without_tta": final.test_macro_f1}
    summary = {
        "test_accuracy": scored["accuracy"], "test_loss": scored["loss"], "test_macro_f1": scored["macro_f1"],
        **without_tta, "epochs": config.epochs, "steps": run.step, "input": "stream" if data.streamed else "device",
        "train_images_per_second": train_speed(run.records),
        "param_count": count_params(unreplicate(state.params)), "seed": config.seed,
        "source_seeds": config.source_seeds(),
        "num_devices": len(trainer.program.devices), "processes": jax.process_count(),
        "seeds_per_program": len(trainer.members), "model_axis": trainer.program.model_axis,
        "compute_dtype": resolved_dtype(config),  # what --dtype (auto: by platform) computed in
        "recipe": member.checkpoints.recipe,  # a recipe file's path and sha256; None: a built-in
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peak_host_memory_mb": host.peak_host_memory_mb(),
        "wall_seconds": time.time() - session.started, "resumed_from_step": session.resumed_from,
        "test_accuracy_per_epoch": [r.test_accuracy for r in run.records],
        "dataset": data.describe(), "config": config.to_dict(), "versions": host.versions(),
        "machine": host.machine(), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    outputs.plot_curves([r.to_json() for r in run.records], member.workdir / "curves.png",
                        title=f"{config.model_tag} on {config.dataset_tag}, seed {config.seed}")
    evaluation = report(scored, data.class_names, config.top_k, result, config.tta)
    outputs.write_eval(member.workdir, evaluation,
                       title=f"{config.model_tag} on {config.dataset_tag}/{config.eval_split}, seed {config.seed}")
    if evaluation.get("note"):
        log.warning("evaluation: %s", evaluation["note"])
    if predictions is not None:
        outputs.write_predictions(member.workdir, predictions, data.eval.labels)
    outputs.write_json(member.workdir / "summary.json", summary)  # last: it marks the outputs complete
    cut = run.step < total_steps(config.optimisation, trainer.steps_per_epoch)  # --max_steps ended it early
    log.info("done: test accuracy %.4f%s after %s; outputs in %s", summary["test_accuracy"],
             f" with test-time augmentation ({final.test_accuracy:.4f} without)" if augmented else "",
             f"{run.step} steps (--max_steps; the schedule is {config.epochs:g} epochs)" if cut else
             f"{config.epochs:g} epoch{'' if config.epochs == 1 else 's'} ({run.step} steps)", member.workdir)
