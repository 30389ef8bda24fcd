"""Training and evaluation speed of a model on random data (see jaxrec.benchmark for the fields).

    python experiments/benchmark.py                       # the article CNN, batch 128, CIFAR shape
    python experiments/benchmark.py --json                # one JSON object on stdout
    python experiments/benchmark.py --model cnn --image_shape 28,28,1 --batch_size 256

Model flags are the training flags (jaxrec.config.Config); the rest say what data to fake and how
long to time.
"""

import dataclasses
import json
import sys

from jaxrec import config as config_lib
from jaxrec.benchmark import BenchmarkOptions, format_report, run_benchmark
from jaxrec.errors import InputError

BENCHMARK_HELP = {
    "image_shape": "Shape of one random uint8 image, height,width,channels.",
    "num_classes": "Number of classes of the random labels.",
    "train_examples": "Random training images kept on the device; batches are drawn from them.",
    "eval_examples": "Random evaluation images; one timed window evaluates all of them.",
    "windows": "Timed windows; the median is reported.",
    "calls_per_window": "Training calls (of --steps_per_call steps) per timed window.",
    "warmup_calls": "Untimed training calls after compilation.",
    "matmul_size": "Side of the square float32 matmul that measures the peak FLOP/s (0: 2048 on CPU, 8192 else).",
}


def main(argv=None) -> int:
    parser = config_lib.build_parser(__doc__, config_lib.Config(progress=False))
    defaults = BenchmarkOptions()
    for field in dataclasses.fields(BenchmarkOptions):
        value = getattr(defaults, field.name)
        kind = config_lib._parse_int_tuple if isinstance(value, tuple) else type(value)
        parser.add_argument(f"--{field.name}", type=kind, default=value, help=BENCHMARK_HELP[field.name])
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a report.")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    options = BenchmarkOptions(**{f.name: args.pop(f.name) for f in dataclasses.fields(BenchmarkOptions)})
    try:
        result = run_benchmark(config_lib.Config(**args), options)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if as_json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
