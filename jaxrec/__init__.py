"""jaxrec: a functional JAX/Flax research codebase for image recognition."""

from jaxrec.config import Config

__version__ = "0.1.0"


def train_and_evaluate(config: Config, workdir: str):
    """Trains and evaluates `config`, writing outputs to `workdir`; returns the final state (see jaxrec.train)."""
    from jaxrec.train import train_and_evaluate as _run  # not at import: `import jaxrec` stays light (no JAX)

    return _run(config, workdir)


__all__ = ["Config", "train_and_evaluate", "__version__"]
