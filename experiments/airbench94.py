"""Train airbench94 (Keller Jordan's 94%-on-CIFAR-10 network) with its whole recipe, and evaluate it
with and without test-time augmentation.

    python experiments/airbench94.py --dataset path/to/cifar10-jpeg --seed 0
    python experiments/airbench94.py --dataset path/to/cifar10-jpeg --epochs 2     # the recipe on 96 steps
    python experiments/airbench94.py --dataset path/to/cifar10-jpeg --tta 0 --lookahead false

The same as `jaxrec train --model airbench94`; every flag is a field of jaxrec.config.Config, with
airbench94's values (DEFAULTS in jaxrec/models/airbench.py) as the defaults; see --help.
"""

import sys

from jaxrec.cli import run_experiment
from jaxrec.models import config_for

if __name__ == "__main__":
    sys.exit(run_experiment(sys.argv[1:], __doc__, config_for("airbench94")))
