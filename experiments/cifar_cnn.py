"""Train the article's CNN on CIFAR-10 (or any data set the config names) and evaluate it.

    python experiments/cifar_cnn.py --seed 0
    python experiments/cifar_cnn.py --dataset cifar10_sample --epochs 3
    python experiments/cifar_cnn.py --dataset ~/data/cifar10-jpeg --augment

Every flag is a field of jaxrec.config.Config; see --help.
"""

import logging
import sys

from jaxrec import config as config_lib
from jaxrec.errors import InputError
from jaxrec.train import train_and_evaluate


def main(argv=None) -> None:
    config = config_lib.parse_args(argv, description=__doc__, defaults=config_lib.Config(model="cnn"))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("jaxrec").setLevel(logging.INFO)
    config = config.replace(workdir=config.workdir or config.default_workdir())
    try:
        train_and_evaluate(config, config.workdir)
    except (InputError, FloatingPointError) as err:  # the message says what to do; a traceback would not
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
