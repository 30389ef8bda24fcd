"""Train the article's CNN on CIFAR-10 (or any data set the config names) and evaluate it.

    python experiments/cifar_cnn.py --seed 0
    python experiments/cifar_cnn.py --dataset cifar10_sample --epochs 3
    python experiments/cifar_cnn.py --dataset ~/data/cifar10-jpeg --augment

Every flag is a field of jaxrec.config.Config; see --help.
"""

import sys

from jaxrec.cli import run_experiment
from jaxrec.config import Config

if __name__ == "__main__":
    sys.exit(run_experiment(sys.argv[1:], __doc__, Config(model="cnn")))
