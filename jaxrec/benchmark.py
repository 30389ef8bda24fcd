"""Training and evaluation speed of a model on random data, through the training loop's own code.

`run_benchmark(config, options)` builds the model named by `config.model` (any model of
`jaxrec.models.create_model`), puts random uint8 images of `options.image_shape` on the devices
and times the compiled functions the training loop uses: `jaxrec.parallel.make_train_fn` (with
`config.steps_per_call` steps per call) and `jaxrec.evaluation.Evaluator`, with the same `Preprocess`.
It reports images/s (the median of several timed windows after warm-up, each ended by
`block_until_ready`), compile times, FLOPs per image from XLA's cost analysis, the achieved FLOP/s
as a fraction of a float32 matmul measured on the same device, peak host memory and the device.
Nothing here is CPU-specific: the same call runs on GPU or TPU.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import cpu_devices, host
from jaxrec.config import BenchmarkOptions, Config, check
from jaxrec.data.pipeline import Preprocess, epoch_indices
from jaxrec.errors import InputError
from jaxrec.evaluation import Evaluator
from jaxrec.models import count_params, create_model
from jaxrec.parallel import (make_group_train_fn, make_train_fn, make_unstack_fn, per_device_batch, replicate, select_devices,
                             split_models_over_devices, split_over_devices, stack_states)
from jaxrec.state import create_train_state


def _flops(compiled: Any) -> float:
    """Total FLOPs of a compiled computation from XLA's cost analysis (per device under pmap)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan"))) if analysis else float("nan")


def _timed_windows(run: Callable[[], Any], windows: int) -> list[float]:
    """Seconds of each call of `run`, which must block until its device work is done."""
    seconds = []
    for _ in range(windows):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def matmul_peak_flops(device: jax.Device, size: int = 0, windows: int = 5) -> float:
    """FLOP/s of a float32 [size, size] @ [size, size] matmul on `device`: the reachable peak."""
    size = size or (2048 if device.platform == "cpu" else 8192)
    a = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32), device)
    matmul = jax.jit(jnp.dot)
    jax.block_until_ready(matmul(a, a))
    seconds = _timed_windows(lambda: jax.block_until_ready(matmul(a, a)), windows)
    return 2 * size**3 / min(seconds)  # the fastest run: a peak, not a typical value


def _training_program(config: Config, options: BenchmarkOptions, preprocess: Preprocess, devices: list[jax.Device],
                      state: Any, order: np.ndarray, keys: tuple[jax.Array, ...],
                      steps_per_epoch: int) -> tuple[Callable, Any, list[np.ndarray], jax.Array]:
    """The train function the loop would run, its replicated state, the index batches of its calls
    and its key: one model's (make_train_fn), or options.seeds_per_program models' in one program
    (make_group_train_fn, each model with its own initialisation and data order)."""
    steps, models, num_devices = config.steps_per_call, options.seeds_per_program, len(devices)
    if models == 1:
        calls = [split_over_devices(order[i:i + steps], num_devices) for i in range(0, len(order) - steps + 1, steps)]
        train_fn = make_train_fn(preprocess, devices, config.label_smoothing, config.steps_loop)
        return train_fn, replicate(state, devices), calls, keys[2]
    model = create_model(config, options.num_classes)
    states = [state] + [create_train_state(config, model, options.image_shape, jax.random.fold_in(keys[0], k),
                                           steps_per_epoch) for k in range(1, models)]
    orders = np.stack([order] + [np.resize(epoch_indices(jax.random.fold_in(keys[1], k), 0, options.train_examples,
                                                         config.batch_size), order.shape)
                                 for k in range(1, models)], axis=1)  # [steps, K, batch]
    calls = [split_models_over_devices(orders[i:i + steps], num_devices)
             for i in range(0, len(orders) - steps + 1, steps)]
    train_fn = make_group_train_fn(preprocess, devices, models, options.model_axis, config.label_smoothing,
                                   config.steps_loop)
    rngs = jnp.stack([jax.random.fold_in(keys[2], k) for k in range(models)])
    return train_fn, replicate(stack_states(states), devices), calls, rngs


def run_benchmark(config: Config, options: BenchmarkOptions = BenchmarkOptions()) -> dict[str, Any]:
    """Times training and evaluation of `config.model` on random data; returns the figures as a dict."""
    check(config)
    check(options)
    if options.train_examples < config.batch_size:
        raise InputError(f"--train_examples {options.train_examples}: must be >= --batch_size ({config.batch_size})")
    cpu_devices.split_host(config, (config.batch_size,))
    devices = select_devices(config.num_devices)
    num_devices = len(devices)
    per_device_batch(config.batch_size, num_devices)
    steps = config.steps_per_call

    rng = np.random.default_rng(config.seed)
    images = rng.integers(0, 256, (options.train_examples, *options.image_shape), dtype=np.uint8)
    labels = rng.integers(0, options.num_classes, options.train_examples).astype(np.int32)
    # Mean and std of uniform bytes; the values only matter for the numerics, not for the speed.
    preprocess = Preprocess(mean=(127.5,) * options.image_shape[-1], std=(73.9,) * options.image_shape[-1],
                            augment=config.augment)

    init_key, shuffle_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    model = create_model(config, options.num_classes)
    steps_per_epoch = options.train_examples // config.batch_size
    state = create_train_state(config, model, options.image_shape, init_key, steps_per_epoch)
    param_count = count_params(state.params)
    train_images, train_labels = replicate(images, devices), replicate(labels, devices)

    one_model = make_train_fn(preprocess, devices, config.label_smoothing, config.steps_loop)
    order = epoch_indices(shuffle_key, 0, options.train_examples, config.batch_size)
    order = np.resize(order, (max(len(order), steps), config.batch_size))  # at least one call's worth
    one_step = one_model.lower(replicate(state, devices), train_images, train_labels,
                               split_over_devices(order[:1], num_devices), train_key).compile()
    train_flops_per_image = _flops(one_step) / (config.batch_size // num_devices)
    train_fn, state, calls, train_key = _training_program(config, options, preprocess, devices, state, order,
                                                          (init_key, shuffle_key, train_key), steps_per_epoch)

    start = time.perf_counter()
    compiled_train = train_fn.lower(state, train_images, train_labels, calls[0], train_key).compile()
    train_compile_seconds = time.perf_counter() - start

    call_number = 0

    def train_calls(count: int) -> None:
        nonlocal state, call_number
        for _ in range(count):
            state, metrics = compiled_train(state, train_images, train_labels, calls[call_number % len(calls)],
                                            train_key)
            call_number += 1
        jax.block_until_ready(state)

    train_calls(options.warmup_calls)
    train_seconds = _timed_windows(lambda: train_calls(options.calls_per_window), options.windows)
    train_images_per_window = options.calls_per_window * steps * config.batch_size * options.seeds_per_program
    train_rate = train_images_per_window / statistics.median(train_seconds)

    variables = (state if options.seeds_per_program == 1 else
                 make_unstack_fn(options.seeds_per_program, devices)(state)[0]).eval_variables  # the first model's
    eval_images = rng.integers(0, 256, (options.eval_examples, *options.image_shape), dtype=np.uint8)
    eval_labels = rng.integers(0, options.num_classes, options.eval_examples).astype(np.int32)
    evaluate = Evaluator(create_model(config, options.num_classes, for_eval=True).apply, eval_images, eval_labels,
                         preprocess, devices, config.eval_batch_size)
    start = time.perf_counter()
    compiled_eval = evaluate.lower(variables).compile()
    eval_compile_seconds = time.perf_counter() - start
    eval_flops_per_image = _flops(compiled_eval) / evaluate.per_device_batch
    evaluate(variables)  # warm-up: the loop's own call compiles its own executable (AOT compile fills no cache)
    eval_seconds = _timed_windows(lambda: evaluate(variables), options.windows)  # ends in device_get
    eval_rate = options.eval_examples / statistics.median(eval_seconds)

    peak = matmul_peak_flops(devices[0], options.matmul_size)
    train_flops = train_rate * train_flops_per_image / num_devices  # per device, as the peak is
    eval_flops = eval_rate * eval_flops_per_image / num_devices
    return {
        "model": config.model, "param_count": param_count, "image_shape": list(options.image_shape),
        "num_classes": options.num_classes, "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size, "steps_per_call": steps, "augment": config.augment,
        "seeds_per_program": options.seeds_per_program, "model_axis": options.model_axis,
        "train_images_per_second": train_rate, "eval_images_per_second": eval_rate,
        "eval_to_train_ratio": eval_rate / train_rate,
        "train_window_seconds": train_seconds, "eval_window_seconds": eval_seconds,
        "train_compile_seconds": train_compile_seconds, "eval_compile_seconds": eval_compile_seconds,
        "train_flops_per_image": train_flops_per_image, "eval_flops_per_image": eval_flops_per_image,
        "train_flops_per_second": train_flops, "eval_flops_per_second": eval_flops,
        "matmul_peak_flops_per_second": peak,
        "train_fraction_of_peak": train_flops / peak, "eval_fraction_of_peak": eval_flops / peak,
        "peak_host_memory_mb": host.peak_host_memory_mb(),
        "platform": devices[0].platform, "device_kind": devices[0].device_kind, "num_devices": num_devices,
        "versions": host.versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def format_report(result: dict[str, Any]) -> str:
    """The headline figures as a few human-readable lines."""
    r = result
    return "\n".join([
        f"{r['model']} ({r['param_count']:,} params), images {tuple(r['image_shape'])}, batch {r['batch_size']}, "
        f"{r['steps_per_call']} steps/call, {r['num_devices']} x {r['device_kind']} ({r['platform']})"
        + (f", {r['seeds_per_program']} models per program ({r['model_axis']})" if r["seeds_per_program"] > 1 else ""),
        f"train: {r['train_images_per_second']:,.0f} images/s, {r['train_flops_per_image'] / 1e6:,.1f} MFLOP/image, "
        f"{r['train_flops_per_second'] / 1e9:,.1f} GFLOP/s = {r['train_fraction_of_peak']:.0%} of matmul peak "
        f"({r['matmul_peak_flops_per_second'] / 1e9:,.1f} GFLOP/s); compile {r['train_compile_seconds']:.1f} s",
        f"eval:  {r['eval_images_per_second']:,.0f} images/s ({r['eval_to_train_ratio']:.1f}x training), "
        f"{r['eval_flops_per_image'] / 1e6:,.1f} MFLOP/image, {r['eval_fraction_of_peak']:.0%} of peak; "
        f"compile {r['eval_compile_seconds']:.1f} s",
        f"peak host memory {r['peak_host_memory_mb']:,.0f} MB",
    ])
