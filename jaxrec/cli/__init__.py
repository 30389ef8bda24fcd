"""The `jaxrec` command line (commands) and its flags, generated from the settings dataclasses (flags).
Imports no JAX, so `--help` and a refused setting answer at once."""

from jaxrec.cli.commands import exit_code, main, run_experiment, setup_logging, start_jax, train

__all__ = ["exit_code", "main", "run_experiment", "setup_logging", "start_jax", "train"]
