"""Training and evaluation speed of a model on random data, through the training loop's own code (make_program's
program and the Evaluator, with the same `Preprocess`); what each figure means: docs/speed.md."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import BenchmarkOptions, Config, check
from jaxrec.core.optim import total_steps
from jaxrec.core.parallel import Program, make_program, per_device_batch, replicate, select_devices, unreplicate
from jaxrec.core.pipeline import Preprocess, epoch_indices
from jaxrec.core.state import create_train_state
from jaxrec.core.steps import Objective
from jaxrec.data.types import ArrayDataset
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.models import count_params, create_model
from jaxrec.models.recipes import check_images
from jaxrec.runtime import host
from jaxrec.runtime.setup import prepare


def _flops(compiled: Any) -> float:
    """Total FLOPs of a compiled computation from XLA's cost analysis (per device under pmap)."""
    analysis = compiled.cost_analysis()
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


@dataclasses.dataclass(frozen=True)
class RandomData:
    """Random uint8 images and labels of the benchmark's shape, and their statistics."""

    images: np.ndarray
    labels: np.ndarray
    eval: ArrayDataset
    preprocess: Preprocess


def random_data(config: Config, options: BenchmarkOptions) -> RandomData:
    rng = np.random.default_rng(config.seed)
    shape, classes = options.image_shape, options.num_classes
    images = rng.integers(0, 256, (options.train_examples, *shape), dtype=np.uint8)
    labels = rng.integers(0, classes, options.train_examples).astype(np.int32)
    evaluated = ArrayDataset(rng.integers(0, 256, (options.eval_examples, *shape), dtype=np.uint8),
                             rng.integers(0, classes, options.eval_examples).astype(np.int32),
                             tuple(map(str, range(classes))))
    # Mean and std of uniform bytes; the values only matter for the numerics, not for the speed.
    preprocess = Preprocess.of(config.optimisation, (127.5,) * shape[-1], (73.9,) * shape[-1],
                                        options.train_examples // config.batch_size)
    return RandomData(images, labels, evaluated, preprocess)


def training_program(config: Config, options: BenchmarkOptions, data: RandomData, devices: list[jax.Device],
                     models: int) -> tuple[Program, Any, list[np.ndarray], jax.Array]:
    """The program the training loop would run for `models` models, its replicated state, the index batches of
    its calls and its keys; model k's keys are seed `config.seed`'s folded with k (k = 0: unfolded)."""
    steps = config.steps_per_call
    keys = jax.random.split(jax.random.key(config.seed), 3)
    fold = lambda key, k: key if k == 0 else jax.random.fold_in(key, k)  # noqa: E731
    model = create_model(config, options.num_classes)
    steps_per_epoch = options.train_examples // config.batch_size
    states = [create_train_state(config.optimisation, model, options.image_shape, fold(keys[0], k), steps_per_epoch)
              for k in range(models)]
    orders = np.stack([epoch_indices(fold(keys[1], k), 0, options.train_examples, config.batch_size)
                       for k in range(models)], axis=1)  # [steps, K, batch]
    orders = np.resize(orders, (max(len(orders), steps), *orders.shape[1:]))  # at least one call's worth
    objective = Objective.of(config.optimisation, total_steps(config.optimisation, steps_per_epoch))
    program = make_program(data.preprocess, devices, (models, options.model_axis), objective, config.steps_loop)
    calls = [program.shares(orders[i:i + steps]) for i in range(0, len(orders) - steps + 1, steps)]
    rngs = jnp.stack([fold(keys[2], k) for k in range(models)])
    return program, program.stack(states), calls, program.keys(rngs)


def time_training(config: Config, options: BenchmarkOptions, data: RandomData,
                  devices: list[jax.Device]) -> tuple[dict[str, Any], Any]:
    """Training figures (images/s of every model, compile seconds, one model's step FLOPs) and the state after them."""
    one, one_state, one_calls, one_key = training_program(config.replace(steps_per_call=1), options, data, devices, 1)
    train_images, train_labels = replicate(data.images, devices), replicate(data.labels, devices)
    one_step = one.fn.lower(one_state, train_images, train_labels, one_calls[0], one_key).compile()
    program, state, calls, key = training_program(config, options, data, devices, options.seeds_per_program)
    start = time.perf_counter()
    compiled = program.fn.lower(state, train_images, train_labels, calls[0], key).compile()
    compile_seconds = time.perf_counter() - start
    done = 0

    def train_calls(count: int) -> None:
        nonlocal state, done
        for _ in range(count):
            state, _ = compiled(state, train_images, train_labels, calls[done % len(calls)], key)
            done += 1
        jax.block_until_ready(state)

    train_calls(options.warmup_calls)
    seconds = _timed_windows(lambda: train_calls(options.calls_per_window), options.windows)
    images = options.calls_per_window * config.steps_per_call * config.batch_size * options.seeds_per_program
    return {"train_images_per_second": images / statistics.median(seconds), "train_window_seconds": seconds,
            "train_compile_seconds": compile_seconds,
            "train_flops_per_image": _flops(one_step) / (config.batch_size // len(devices)),
            "param_count": count_params(unreplicate(one_state).params)}, program.unstack(state)[0]


def time_evaluation(config: Config, options: BenchmarkOptions, data: RandomData, devices: list[jax.Device],
                    state: Any) -> dict[str, Any]:
    """Evaluation figures of one model (state: its replicated train state) with the loop's Evaluator."""
    evaluate = Evaluator(create_model(config, options.num_classes, for_eval=True).apply, data.eval, data.preprocess,
                         devices, config.eval_batch_size)
    variables = state.eval_variables
    start = time.perf_counter()
    compiled = evaluate.lower(variables).compile()
    compile_seconds = time.perf_counter() - start
    evaluate(variables)  # warm-up: the loop's own call compiles its own executable (AOT compile fills no cache)
    seconds = _timed_windows(lambda: evaluate(variables), options.windows)  # ends in device_get
    return {"eval_images_per_second": options.eval_examples / statistics.median(seconds),
            "eval_window_seconds": seconds, "eval_compile_seconds": compile_seconds,
            "eval_flops_per_image": _flops(compiled) / evaluate.per_device_batch}


def run_benchmark(config: Config, options: BenchmarkOptions = BenchmarkOptions()) -> dict[str, Any]:
    """Times training and evaluation of `config.model` on random data; returns the figures as a dict."""
    check(options)
    if options.train_examples < config.batch_size:
        raise InputError(f"--train_examples {options.train_examples}: must be >= --batch_size ({config.batch_size})")
    shape = ",".join(map(str, options.image_shape))
    check_images(config, options.image_shape, options.num_classes, f"--image_shape {shape}")
    prepare(config)
    devices = select_devices(config.num_devices)
    per_device_batch(config.batch_size, len(devices))
    data = random_data(config, options)
    train, state = time_training(config, options, data, devices)
    evaluation = time_evaluation(config, options, data, devices, state)
    peak = matmul_peak_flops(devices[0], options.matmul_size)
    train_flops = train["train_images_per_second"] * train["train_flops_per_image"] / len(devices)  # per device
    eval_flops = evaluation["eval_images_per_second"] * evaluation["eval_flops_per_image"] / len(devices)
    return {
        "model": config.model, "param_count": train.pop("param_count"), "image_shape": list(options.image_shape),
        "num_classes": options.num_classes, "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size, "steps_per_call": config.steps_per_call, "augment": config.augment,
        "seeds_per_program": options.seeds_per_program, "model_axis": options.model_axis,
        "train_images_per_second": train["train_images_per_second"],
        "eval_images_per_second": evaluation["eval_images_per_second"],
        "eval_to_train_ratio": evaluation["eval_images_per_second"] / train["train_images_per_second"],
        **train, **evaluation,  # the images/s above keep their places
        "train_flops_per_second": train_flops, "eval_flops_per_second": eval_flops,
        "matmul_peak_flops_per_second": peak,
        "train_fraction_of_peak": train_flops / peak, "eval_fraction_of_peak": eval_flops / peak,
        "peak_host_memory_mb": host.peak_host_memory_mb(),
        "platform": devices[0].platform, "device_kind": devices[0].device_kind, "num_devices": len(devices),
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

