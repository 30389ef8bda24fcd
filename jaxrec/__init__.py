"""jaxrec: a functional JAX/Flax research codebase for image recognition.

The package is laid out by role (docs/design.md): cli/, config/, data/, models/, training/,
evaluation/, run/, runtime/ and studies/. `jaxrec.train_and_evaluate` and `jaxrec.Config` are the
library's entry points.
"""

import importlib.abc
import importlib.machinery
import sys

from jaxrec.config import Config

__version__ = "0.2.0"

# Modules of the flat layout before 0.2: old name -> (where it went, the command that replaces
# running it with `python -m`).
MOVED = {
    "train": ("jaxrec.training.loop", "jaxrec train"), "group": ("jaxrec.training.loop", "jaxrec study"),
    "study": ("jaxrec.studies.study", "jaxrec study"), "stats": ("jaxrec.studies.stats", "jaxrec study"),
    "evaluate": ("jaxrec.evaluation.evaluator", "jaxrec evaluate"),
    "predict": ("jaxrec.evaluation.predict", "jaxrec predict"),
    "metrics": ("jaxrec.evaluation.metrics", "jaxrec evaluate"),
    "tfds_prepare": ("jaxrec.data.tfds_prepare", "jaxrec prepare"), "flags": ("jaxrec.cli.flags", "jaxrec"),
    **{name: (f"jaxrec.{where}", "jaxrec") for name, where in {
        "kernels": "models.kernels", "state": "training.state", "steps": "training.steps",
        "optim": "training.optim", "parallel": "training.parallel", "run_state": "training.run_state",
        "checkpointing": "run.checkpoints", "workdir": "run.workdir", "outputs": "run.outputs",
        "cpu_devices": "runtime.cpu_devices", "distributed": "runtime.distributed", "interrupt": "runtime.interrupt",
        "memory": "runtime.memory", "host": "runtime.host"}.items()},
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers for the old module names, in one line: an import names the new module; `python -m`
    names the command to run (it never exits 0 having done nothing)."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith("jaxrec.") and name.removeprefix("jaxrec.") in MOVED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        where, _ = MOVED[module.__name__.removeprefix("jaxrec.")]
        raise ImportError(f"{module.__name__} moved to {where} (jaxrec 0.2 lays the package out by role: "
                          f"docs/design.md)")

    def get_code(self, name):  # runpy: `python -m jaxrec.<old name>`
        command = MOVED[name.removeprefix("jaxrec.")][1].removeprefix("jaxrec").strip()
        use = f"run `jaxrec {command} ...` (or `python -m jaxrec {command} ...`); " if command else ""
        line = f"python -m {name} is not a command: {use}`jaxrec --help` lists the commands"
        return compile(f"import sys\nsys.exit({line!r})", name, "exec")


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def train_and_evaluate(config: Config, workdir: str):
    """Trains and evaluates `config`, writing outputs to `workdir`; returns the final state (see jaxrec.training.loop)."""
    from jaxrec.training.loop import train_and_evaluate as _run  # not at import: `import jaxrec` stays light (no JAX)

    return _run(config, workdir)


__all__ = ["Config", "MOVED", "train_and_evaluate", "__version__"]
