"""jaxrec: a functional JAX/Flax research codebase for image recognition. `jaxrec.train_and_evaluate` and
`jaxrec.Config` are the library's entry points; docs/design.md gives the layout."""

from jaxrec.config import Config

__version__ = "0.4.0"


def train_and_evaluate(config: Config, workdir: str):
    """Trains and evaluates `config`, writing outputs to `workdir`; returns the final state."""
    from jaxrec.training.loop import train_and_evaluate as _run  # not at import: `import jaxrec` stays light (no JAX)

    return _run(config, workdir)


__all__ = ["Config", "train_and_evaluate", "__version__"]
