"""Training and evaluation speed of a model on random data: `jaxrec benchmark` (see jaxrec.benchmark).

    python experiments/benchmark.py                       # the article CNN, batch 128, CIFAR shape
    python experiments/benchmark.py --json                # one JSON object on stdout
    python experiments/benchmark.py --model cnn --image_shape 28,28,1 --batch_size 256

Model flags are the training flags (jaxrec.config.Config); the rest say what data to fake and how
long to time (jaxrec.config.BenchmarkOptions).
"""

import sys

from jaxrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
