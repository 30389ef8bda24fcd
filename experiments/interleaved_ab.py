"""A/B of kernel choices and device counts in one process, their timed windows interleaved.

On a shared machine two benchmark runs a minute apart can differ by 20% or more; windows of two
variants taken in turn in one process see the same machine. Each variant is a list of Config
settings (any kernel knob of jaxrec.models.kernels, and `devices`: how many of the process's CPU devices it
trains on; a 1-device program in a 2-device process uses the same thread pool as a 1-device process).
It trains the article CNN (batch 128, 10 steps per call, random CIFAR-shaped bytes), or the model a
variant names (`model=airbench94`: its recipe's batch, one window of --calls calls of its steps per
call), with the loop's own program (jaxrec.core.parallel.make_program), or with --eval times the
Evaluator, and prints each variant's median images/s and the median ratio of each variant to the
first, window by window. XLA:CPU's flags are a run's (jaxrec.runtime.xla_flags). The A/Bs in
results/benchmark.md and results/airbench94.md:

    python experiments/interleaved_ab.py conv_grad=lax conv_grad=patch
    python experiments/interleaved_ab.py devices=1 devices=2
    python experiments/interleaved_ab.py --eval eval_image_conv=patch eval_image_conv=lax
    python experiments/interleaved_ab.py --windows 4 --calls 1 model=airbench94,steps_per_call=2,batch_norm=flax \
        model=airbench94,steps_per_call=2,batch_norm=matmul
"""

import argparse
import statistics
import sys
import time
import typing

import jax
import numpy as np

from jaxrec.cli import flags
from jaxrec.config import Config, check
from jaxrec.core.pipeline import Preprocess
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.data.types import ArrayDataset
from jaxrec.errors import InputError
from jaxrec.models import config_for, create_model
from jaxrec.runtime import cpu_devices, xla_flags
from jaxrec.core.parallel import make_program, replicate, select_devices
from jaxrec.core.state import create_train_state
from jaxrec.core.steps import Objective

PRE = Preprocess(mean=(127.5,) * 3, std=(73.9,) * 3)  # uniform bytes; only the speed matters here


def variant(spec: str) -> tuple[Config, int]:
    """'conv_grad=patch,devices=1' -> (Config with those knobs over the model's recipe, device count; 0: all);
    a setting that is not one raises InputError."""
    hints = typing.get_type_hints(Config)
    items = [item.split("=", 1) for item in spec.split(",") if item]
    for item in items:
        if len(item) < 2:
            raise InputError(f"variant {spec}: {item[0]} has no value; write it KNOB=VALUE")
        if item[0] not in {*hints, "devices"} - {"knobs"}:
            raise InputError(f"variant {spec}: unknown setting {item[0]}; the settings are devices, model, the kernel "
                             f"knobs (image_conv, eval_image_conv, conv_grad, pool, batch_norm, steps_loop) and the "
                             f"other jaxrec train flags without their --")
    settings = dict(items)
    try:
        devices = int(settings.pop("devices", 0))
        typed = {k: flags.converter(hints[k])(v) for k, v in settings.items()}
    except (ValueError, argparse.ArgumentTypeError) as error:  # the flags' converters raise the second
        raise InputError(f"variant {spec}: a value is not of its setting's type ({error})") from None
    return check(config_for(typed.pop("model", "cnn"), **typed)), devices


def train_runner(config: Config, devices: list, images: np.ndarray, labels: np.ndarray, orders: list):
    """A function that runs the calls of `orders` and returns the images trained."""
    objective = Objective.of(config.optimisation, 10_000)
    program = make_program(PRE, devices, objective=objective, steps_loop=config.steps_loop)
    model = create_model(config, 10)
    state = program.stack([create_train_state(config.optimisation, model, (32, 32, 3), jax.random.key(0), 390)])
    data = replicate(images, devices), replicate(labels, devices)
    calls = [program.shares(order[:, None]) for order in orders]
    key = program.keys(jax.random.key(1)[None])

    def run() -> int:
        nonlocal state
        for call in calls:
            state, _ = program.fn(state, *data, call, key)
        jax.block_until_ready(state)
        return sum(order.size for order in orders)

    run()  # compiles
    return run


def eval_runner(config: Config, devices: list, images: np.ndarray, labels: np.ndarray, orders: list):
    model = create_model(config, 10, for_eval=True)
    variables = replicate(model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)), devices)
    split = ArrayDataset(images, labels, tuple(map(str, range(int(labels.max()) + 1))))
    evaluator = Evaluator(model.apply, split, PRE, devices, config.eval_batch_size)
    evaluator(variables)  # compiles

    def run() -> int:
        evaluator(variables)  # returns host numbers: the work is done
        return len(labels)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="comma-separated KNOB=VALUE settings, one argument per variant")
    parser.add_argument("--eval", action="store_true", help="time evaluation (10,000 images) instead of training")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--calls", type=int, default=4, help="training calls per window")
    args = parser.parse_args()
    try:  # every variant before any is timed
        variants = [variant(spec) for spec in args.variants]
        if min(args.windows, args.calls) < 1:
            raise InputError(f"--windows and --calls must be >= 1, got {args.windows} and {args.calls}")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    first = variants[0][0]
    xla_flags.set_cpu_flags(first)
    cpu_devices.split_host(first, (first.batch_size,))
    rng = np.random.default_rng(0)
    batch, steps = first.batch_size, first.steps_per_call
    count = 10_000 if args.eval else max(5_000, batch * steps)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.int32)
    orders = [rng.permutation(count)[:batch * steps].astype(np.int32).reshape(steps, batch) for _ in range(args.calls)]
    make = eval_runner if args.eval else train_runner
    runners = [make(config, select_devices(devices), images, labels, orders) for config, devices in variants]
    rates = [[] for _ in variants]
    for _ in range(args.windows):
        for runner, rate in zip(runners, rates):
            start = time.perf_counter()
            done = runner()
            rate.append(done / (time.perf_counter() - start))
    print(f"{jax.devices()[0].device_kind}, {len(jax.devices())} devices in the process, {args.windows} windows, "
          f"{'eval' if args.eval else 'training'} images/s")
    for spec, rate in zip(args.variants, rates):
        line = f"{spec}: median {statistics.median(rate):.0f}"
        if rate is not rates[0]:
            ratios = [a / b for a, b in zip(rate, rates[0])]
            line += f", {statistics.median(ratios):.3f}x the first (windows {min(ratios):.3f}-{max(ratios):.3f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
