"""jaxrec.core.steps under `jax.pmap` (docs/design.md). Cached by their arguments (create_model keeps one model per
config), so a study's seeds compile each once; a multi-process run maps over every device of every process."""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import jax_utils

from jaxrec.config import MODEL_AXES
from jaxrec.core.pipeline import Preprocess
from jaxrec.core.steps import Objective, eval_step, train_step
from jaxrec.errors import InputError
from jaxrec.models import AXIS, kernels


def select_devices(num_devices: int = 0) -> list[jax.Device]:
    """The first `num_devices` local devices (all of them for 0); in a multi-process run, every
    device of every process, ordered by process (so each process's devices are one block)."""
    if jax.process_count() > 1:
        if num_devices:
            raise InputError(f"--num_devices {num_devices}: a multi-process run uses every device of every process; "
                             f"use --num_devices 0 (to use fewer, start the processes with fewer devices)")
        counts = collections.Counter(d.process_index for d in jax.devices())
        if len(set(counts.values())) > 1:
            raise InputError(f"the processes have different numbers of devices ({dict(sorted(counts.items()))} by "
                             f"process); start every process with the same number")
        return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    devices = jax.local_devices()
    if num_devices < 0 or num_devices > len(devices):
        raise InputError(f"asked for {num_devices} devices but this host has {len(devices)} "
                         f"({devices[0].platform}); use --num_devices 0 for all of them")
    return devices[:num_devices] if num_devices else devices


def per_device_batch(global_batch: int, num_devices: int) -> int:
    """The per-device share of a global batch; refuses a batch that does not split evenly."""
    if global_batch <= 0 or global_batch % num_devices:
        lower = max(num_devices, global_batch // num_devices * num_devices)
        raise InputError(f"global batch size {global_batch} does not divide evenly over {num_devices} devices; "
                         f"use a multiple of {num_devices}, e.g. --batch_size {lower} or "
                         f"{lower + num_devices}")
    return global_batch // num_devices


def local_devices(devices: Sequence[jax.Device]) -> list[jax.Device]:
    """This process's devices among `devices`, in their order."""
    return [d for d in devices if d.process_index == jax.process_index()]


def local_rows(x: np.ndarray, devices: Sequence[jax.Device]) -> np.ndarray:
    """The rows of `x` (one per device of `devices`, in order) that this process's devices take."""
    if jax.process_count() == 1:
        return x
    return x[[i for i, d in enumerate(devices) if d.process_index == jax.process_index()]]


def replicate(tree: Any, devices: Sequence[jax.Device]) -> Any:
    """One copy of every array per (local) device, on a leading device axis, with the sharding of pmap's own outputs
    (put_shares): otherwise the train step compiles twice, for these inputs and for its returned state."""
    return put_shares(jax_utils.replicate(tree, devices=local_devices(devices)), devices)


def put_shares(tree: Any, devices: Sequence[jax.Device]) -> Any:
    """Host arrays [local devices, ...] onto the devices, row d on device d, with pmap's output sharding (async)."""
    return _identity(tuple(devices))(tree)


@functools.lru_cache(maxsize=16)
def _identity(devices: tuple[jax.Device, ...]) -> Callable:
    return jax.pmap(lambda x: x, axis_name=AXIS, devices=list(devices))


def unreplicate(tree: Any) -> Any:
    """The first local device's copy (they are identical). Reads that device's buffer: indexing a
    pmap output would be a computation of its own, which in a multi-process run every process must run."""
    return jax.tree_util.tree_map(_first_copy, tree)


def _first_copy(x: Any) -> Any:
    if isinstance(x, jax.Array):
        return x.addressable_data(0).reshape(x.shape[1:])  # the buffer may keep the device axis (of size 1)
    return x[0]


def split_over_devices(x: np.ndarray, num_devices: int, axis: int = -1) -> np.ndarray:
    """Splits the batch `axis` of `x` (e.g. [steps, global_batch]) into a leading device axis ([devices, steps,
    per_device]): device d takes its contiguous slice of each batch."""
    axis %= x.ndim
    per_device = x.shape[axis] // num_devices  # not -1: reshape cannot infer it for an empty batch axis
    return np.moveaxis(x.reshape(*x.shape[:axis], num_devices, per_device, *x.shape[axis + 1:]), axis, 0)


def _scan_steps(body: Callable, state: Any, xs: Any, steps_loop: str) -> tuple[Any, Any]:
    """`body` over the leading (steps) axis of `xs`, a rolled or unrolled `lax.scan` (docs/speed.md, --steps_loop).
    One step is called directly: a one-step scan would stay a loop."""
    if jax.tree_util.tree_leaves(xs)[0].shape[0] == 1:
        state, metrics = body(state, jax.tree_util.tree_map(lambda x: x[0], xs))
        return state, jax.tree_util.tree_map(lambda m: m[None], metrics)
    return jax.lax.scan(body, state, xs, unroll=steps_loop == "unrolled")


@functools.lru_cache(maxsize=16)
def _program_fn(preprocess: Preprocess, devices: tuple[jax.Device, ...], models: int, model_axis: str | None,
                objective: Objective, steps_loop: str) -> Callable:
    """(state, images, labels, indices, rng) -> (state, metrics): state replicated; indices [devices, steps,
    per_device]; images, labels the replicated split to gather from, or a streamed call's batches [devices, steps,
    per_device, ...]; metrics {'loss', 'accuracy'} [devices, steps]. For K = `models` > 1: states stacked (leaves
    [devices, K, ...]), indices [devices, steps, K, per_device], rngs [K], metrics [devices, steps, K]."""
    step = functools.partial(train_step, preprocess=preprocess, objective=objective, axis_name=AXIS)

    def one(state, images, labels, idx, rng):
        return step(state, {"image": images, "label": labels, "index": idx}, rng)

    def train_steps(state, images, labels, indices, rng):
        if images.ndim == indices.ndim + 3:  # the call's own batches: nothing to gather
            return _scan_steps(lambda state, x: one(state, *x, rng), state, (images, labels, indices), steps_loop)
        return _scan_steps(lambda state, idx: one(state, images[idx], labels[idx], idx, rng), state, indices,
                           steps_loop)

    def group_steps(states, images, labels, indices, rngs):
        def body(states, idx):  # idx: [K, per_device]
            if model_axis == "vmap":
                gather = lambda state, idx, rng: one(state, images[idx], labels[idx], idx, rng)
                return jax.vmap(gather)(states, idx, rngs)
            outs = [one(member(states, k), images[idx[k]], labels[idx[k]], idx[k], rngs[k]) for k in range(models)]
            return jax.tree_util.tree_map(lambda *x: jax.numpy.stack(x), *outs)

        return _scan_steps(body, states, indices, steps_loop)

    return jax.pmap(train_steps if models == 1 else group_steps, axis_name=AXIS, in_axes=(0, 0, 0, 0, None),
                    donate_argnums=(0,), devices=list(devices))


def member(states: Any, k: int) -> Any:
    """Model k of states stacked on a (leading) model axis."""
    return jax.tree_util.tree_map(lambda x: x[k], states)


@functools.lru_cache(maxsize=16)
def _unstack_fn(models: int, devices: tuple[jax.Device, ...]) -> Callable:
    """Replicated stacked states [devices, K, ...] -> K replicated states [devices, ...], on the devices."""
    return jax.pmap(lambda states: tuple(member(states, k) for k in range(models)), axis_name=AXIS,
                    devices=list(devices))


@dataclasses.dataclass(frozen=True)
class Program:
    """The compiled training program of K models, and how the loop talks to it."""

    models: int
    devices: tuple[jax.Device, ...]
    fn: Callable  # pmapped (state, images, labels, shares, keys) -> (state, metrics); state donated
    model_axis: str | None = None  # how a program of several holds them (vmap rounds otherwise); None: one model

    def stack(self, states: Sequence[Any]) -> Any:
        """The K models' (unreplicated) train states as the program's one replicated state."""
        # K states of one config (the same model and optimizer objects) as one, every array [K, ...].
        stacked = states[0] if self.models == 1 else jax.tree_util.tree_map(lambda *x: np.stack(x), *states)
        return replicate(stacked, self.devices)

    def unstack(self, state: Any) -> tuple[Any, ...]:
        """The program's state as the K models' replicated states, on the devices."""
        return (state,) if self.models == 1 else _unstack_fn(self.models, self.devices)(state)

    def shares(self, indices: np.ndarray) -> np.ndarray:
        """[steps, K, global_batch] -> this process's rows of the program's index argument."""
        return local_rows(split_over_devices(indices[:, 0] if self.models == 1 else indices, len(self.devices)),
                          self.devices)

    def batch_shares(self, batches: np.ndarray) -> np.ndarray:
        """This process's streamed batches [steps, local_batch, ...] (its columns of each global batch) ->
        [local devices, steps, per_device, ...]."""
        return split_over_devices(batches, len(local_devices(self.devices)), axis=1)

    def keys(self, rngs: jax.Array) -> jax.Array:
        """The K models' training keys [K] -> the program's key argument."""
        return rngs[0] if self.models == 1 else rngs

    def per_model(self, metrics: Any) -> dict[str, np.ndarray]:
        """A call's metrics (the same on every device) as host arrays [steps, K]; waits for the device."""
        metrics = {name: np.asarray(value) for name, value in unreplicate(metrics).items()}
        return {name: value[:, None] for name, value in metrics.items()} if self.models == 1 else metrics


def make_program(preprocess: Preprocess, devices: Sequence[jax.Device], group: tuple[int, str] = (1, "loop"),
                 objective: Objective = Objective(), steps_loop: str | None = None) -> Program:
    """The training program of `group` = (models, model_axis) on `devices` (_program_fn). Only a one-model
    program takes streamed batches: each model of a group reads its own order. steps_loop: 'rolled', 'unrolled',
    or None/'auto' for the devices' platform's (jaxrec.models.kernels)."""
    models, model_axis = group
    if model_axis not in MODEL_AXES:  # callers check it as the user's input; this guards a direct call
        raise ValueError(f"model_axis {model_axis!r}: one of {MODEL_AXES}")
    model_axis = model_axis if models > 1 else None
    if steps_loop in (None, "auto"):
        steps_loop = kernels.for_platform(devices[0].platform).steps_loop
    fn = _program_fn(preprocess, tuple(devices), models, model_axis, objective, steps_loop)
    return Program(models=models, devices=tuple(devices), fn=fn, model_axis=model_axis)


def make_eval_fn(apply_fn: Callable, preprocess: Preprocess, devices: Sequence[jax.Device],
                 probabilities: bool = False) -> Callable:
    """(variables, images, labels, indices, mask) -> eval_step's sums over all devices, pmapped; gathers
    images[indices] in the call, so a split on the devices never leaves them. variables: replicated eval_variables;
    images, labels: a whole split on the devices, or the batch; indices, mask: [devices, per_device], mask 0 on
    padding. The caller loops over batches (a rolled scan is slow on XLA:CPU). With `probabilities`: (variables,
    images, indices) -> softmax probabilities [devices, per_device, classes]."""
    return _eval_fn(apply_fn, preprocess, tuple(devices), probabilities)


@functools.lru_cache(maxsize=32)
def _eval_fn(apply_fn: Callable, preprocess: Preprocess, devices: tuple[jax.Device, ...],
             probabilities: bool) -> Callable:
    step = functools.partial(eval_step, apply_fn=apply_fn, preprocess=preprocess, axis_name=AXIS)

    def evaluate(variables, images, labels, indices, mask):
        return step(variables, {"image": images[indices], "label": labels[indices], "mask": mask})

    def probabilities_of(variables, images, indices):
        return jax.nn.softmax(apply_fn(variables, preprocess.eval(images[indices]), train=False), axis=-1)

    return jax.pmap(probabilities_of if probabilities else evaluate, axis_name=AXIS, devices=list(devices))
