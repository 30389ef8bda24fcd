"""The command line shared by the experiment scripts: flags -> Config -> train_and_evaluate."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from jaxrec import config as config_lib
from jaxrec.errors import InputError


def setup_logging() -> None:
    """jaxrec's own progress at INFO; other libraries only when they warn."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    logging.getLogger("jaxrec").setLevel(logging.INFO)


def run_experiment(argv: Sequence[str] | None, description: str | None, defaults: config_lib.Config,
                   aliases: dict[str, str] | None = None) -> int:
    """Parses flags over `defaults` (plus `aliases`, see config.build_parser), trains and evaluates;
    returns the process exit code (see exit_code).
    """
    from jaxrec.train import train_and_evaluate

    config = config_lib.parse_args(argv, description=description, defaults=defaults, aliases=aliases)
    setup_logging()
    config = config.replace(workdir=config.workdir or config.default_workdir())

    def train() -> None:
        train_and_evaluate(config, config.workdir)

    return exit_code(train)


def exit_code(command: Callable[[], int | None]) -> int:
    """Runs a command-line entry point; returns its exit code (None counts as 0).

    Bad input (InputError) and a diverged run (FloatingPointError) print one line and return 2:
    their messages say what to do, a traceback would not. A run stopped by SIGTERM/SIGINT (after
    saving a checkpoint) prints how to resume and returns 128 + the signal number.
    """
    from jaxrec.interrupt import TrainingInterrupted

    try:
        return command() or 0
    except (InputError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return stopped.exit_code
