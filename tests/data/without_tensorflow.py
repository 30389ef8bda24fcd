"""Runs a module as `python -m MODULE ARGS` would (or a script, `python SCRIPT.py ARGS`), in a process
where TensorFlow cannot be imported, as on an install without the `tfds` extra (a Colab TPU runtime):

    python tests/without_tensorflow.py jaxrec train --dataset ...

JAXREC_TEST_HIDDEN (comma-separated top-level package names) hides other packages instead, e.g.
tensorboardX, as on an install without the `tensorboard` extra.
"""

import importlib.machinery
import os
import runpy
import sys


# What the core install lacks and the tfds extra brings.
HIDDEN = tuple(os.environ.get("JAXREC_TEST_HIDDEN", "tensorflow,importlib_resources").split(","))


class _HideTensorFlow(importlib.machinery.PathFinder):
    """The path finder, except that TensorFlow is not found: as if it were not installed."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


if __name__ == "__main__":
    sys.meta_path[:] = [_HideTensorFlow if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    target, sys.argv = sys.argv[1], sys.argv[1:]
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
