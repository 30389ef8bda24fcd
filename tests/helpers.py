"""Helpers shared by the tests: small models and batches, reading a run's outputs, running a script."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.training import loop as train_lib
from jaxrec.run.checkpoints import checkpoint_dir
from jaxrec.config import Config
from jaxrec.core.pipeline import Preprocess
from jaxrec.models import create_model
from jaxrec.core.run_state import TIMING_FIELDS
from jaxrec.core.state import create_train_state
from jaxrec.data.types import ArrayDataset

ROOT = Path(__file__).resolve().parents[1]

# A narrow version of the article's CNN: same structure, a fraction of the compute, for loop tests.
SMALL = dict(conv_features=(8, 16), dense_features=32)
SMALL_FLAGS = ["--conv_features", "8,16", "--dense_features", "32"]
# CIFAR-10-like normalisation for steps run on random bytes.
PRE = Preprocess(mean=(125.0, 123.0, 114.0), std=(63.0, 62.0, 66.0))


def small_state(config: Config = Config(**SMALL), num_classes: int = 10, shape=(32, 32, 3), seed: int = 0):
    """A freshly initialised train state of `config`'s model."""
    model = create_model(config, num_classes)
    return create_train_state(config.optimisation, model, shape, jax.random.key(seed), steps_per_epoch=10)


def random_batch(n: int, seed: int = 0, num_classes: int = 10, shape=(32, 32, 3)) -> dict[str, jax.Array]:
    """A batch of random uint8 images with labels and example ids, as the train step takes it."""
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, *shape), dtype=np.uint8)),
            "label": jnp.asarray(rng.integers(0, num_classes, n, dtype=np.int32)),
            "index": jnp.arange(n, dtype=jnp.int32)}


def as_split(images, labels, num_classes: int = 10) -> ArrayDataset:
    """Images and labels (arrays of any kind) as a split an Evaluator takes."""
    return ArrayDataset(np.asarray(images), np.asarray(labels), tuple(map(str, range(num_classes))))


def records(workdir: Path) -> list[dict]:
    """A run's metrics.jsonl without the timing fields: what must be identical between equal runs."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]


def checkpoint_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in checkpoint_dir(workdir).iterdir() if p.name.isdigit())


def script_command(script: str, *args: str) -> list[str]:
    """The command line that runs a script as a user would: `experiments/x.py` or `-m jaxrec`."""
    target = ["-m", "jaxrec"] if script == "jaxrec" else [str(ROOT / script)]
    return [sys.executable, *target, *map(str, args)]


def with_file_size_limit(command: list[str], kib: int) -> list[str]:
    """`command` run under a file-size limit of `kib` KiB, as a full disk would stop it; set by the shell, not by a
    preexec_fn, which would run Python between fork and exec in a multithreaded (JAX) process. Without the tests'
    compilation cache: JAX writes an entry in place, so the limit would leave truncated entries every later
    process reads, warns about and compiles again."""
    return ["bash", "-c", f'ulimit -f {kib} && unset JAX_COMPILATION_CACHE_DIR && exec "$@"', "bash", *command]


def without_fake_devices(environ) -> dict[str, str]:
    """`environ` without the tests' 8 fake CPU devices (their other XLA flags kept): a process started
    with it splits the CPU as a user's does, one device per core."""
    flags = [flag for flag in environ.get("XLA_FLAGS", "").split() if "device_count" not in flag]
    return {**environ, "XLA_FLAGS": " ".join(flags)}


def run_script(script: str, *args: str, default_devices: bool = False, cwd: Path | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs a script in a fresh process (see script_command), in `cwd`; default_devices drops the
    tests' 8 fake devices (the process then splits the CPU as a user's does: one device per core)."""
    env = without_fake_devices(os.environ) if default_devices else dict(os.environ)
    return subprocess.run(script_command(script, *args), capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def sigterm_after(monkeypatch, stop_after: int):
    """Makes the training loop receive SIGTERM once `stop_after` steps have run (counted per call),
    through the program jaxrec.core.parallel.make_program builds for it."""
    real = train_lib.make_program

    def make_program(*args, **kwargs):
        program, done = real(*args, **kwargs), {"steps": 0}

        def fn(state, images, labels, indices, rng):
            out = program.fn(state, images, labels, indices, rng)
            before, done["steps"] = done["steps"], done["steps"] + indices.shape[1]
            if before < stop_after <= done["steps"]:
                signal.raise_signal(signal.SIGTERM)
            return out

        return dataclasses.replace(program, fn=fn)

    monkeypatch.setattr(train_lib, "make_program", make_program)


def load_script(name: str) -> ModuleType:
    """experiments/<name>.py as a module (its main block does not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The smallest recipe file (jaxrec.models.recipes): what the tests of `--model path/to/recipe.py` train.
PERCEPTRON = '''"""A two-layer perceptron: the smallest recipe."""
import flax.linen as nn

DEFAULTS = dict(batch_size=50, learning_rate=0.05, eval_batch_size=100)


class Perceptron(nn.Module):
    num_classes: int
    hidden: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
        return nn.Dense(self.num_classes)(x)


def build(config, num_classes, kernels):
    return Perceptron(num_classes)
'''


def write_recipe(folder: Path, text: str = PERCEPTRON, name: str = "perceptron.py") -> Path:
    """A recipe file of `text` in `folder`."""
    path = folder / name
    path.write_text(text)
    return path
