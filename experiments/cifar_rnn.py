"""Train a recurrent network that reads each image row by row (one row per time step) on CIFAR-10
(or any data set the config names) and evaluate it: the CNN's loop, data, metrics and outputs with
config.model = "rnn", for the CNN-vs-RNN comparison.

    python experiments/cifar_rnn.py --seed 0
    python experiments/cifar_rnn.py --dataset cifar10_sample --epochs 3
    python experiments/cifar_rnn.py --dataset ~/data/cifar10-jpeg --rnn_cell gru --rnn_hidden 128

Every flag is a field of jaxrec.config.Config or, for the rnn_* flags that choose the network, a knob
of the rnn recipe (jaxrec.models.rnn.Knobs); see --help.
"""

import sys

from jaxrec.cli import run_experiment
from jaxrec.config import Config

if __name__ == "__main__":
    sys.exit(run_experiment(sys.argv[1:], __doc__, Config(model="rnn")))
