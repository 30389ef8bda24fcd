"""The CPU is split into one JAX device per core unless the user chose a count, before JAX starts."""

import json

import pytest

from helpers import SMALL_FLAGS, run_script
from jaxrec.runtime import cpu_devices
from jaxrec.config import Config

TINY_BENCHMARK = ["benchmark", "--json", *SMALL_FLAGS, "--image_shape", "8,8,3", "--num_classes", "4",
                  "--train_examples", "48", "--eval_examples", "20", "--windows", "1", "--calls_per_window", "1",
                  "--warmup_calls", "0", "--matmul_size", "64", "--eval_batch_size", "10"]


@pytest.mark.parametrize("cores,batches,expected", [(2, [128], 2), (8, [128], 8), (6, [128], 4), (3, [7], 1),
                                                    (4, [], 4), (1, [128], 1), (16, [96, 64], 16)])
def test_one_device_per_core_as_many_as_divide_the_batch(cores, batches, expected):
    assert cpu_devices.per_core_count(cores, batches) == expected


def test_a_count_the_user_set_wins_and_joined_processes_keep_one_each(monkeypatch):
    monkeypatch.setattr(cpu_devices, "configured_count", lambda: -1)  # JAX's 'not set'
    auto = Config()
    assert cpu_devices.wanted_count(auto, [128], environ={}, num_cores=4) == 4
    assert cpu_devices.wanted_count(Config(cpu_devices=3), [128], environ={}, num_cores=4) == 3
    flags = {"XLA_FLAGS": "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8"}
    assert cpu_devices.set_elsewhere(flags) and cpu_devices.wanted_count(auto, [128], flags, 4) is None
    assert cpu_devices.wanted_count(Config(cpu_devices=3), [128], flags, 4) == 3  # the flag is explicit
    assert cpu_devices.wanted_count(auto, [128], {"JAX_COORDINATOR_ADDRESS": "h:1"}, 4) is None
    assert cpu_devices.wanted_count(auto, [128], {"SLURM_STEP_NUM_TASKS": "4"}, 4) is None
    monkeypatch.setattr(cpu_devices, "configured_count", lambda: 2)  # set in code or JAX_NUM_CPU_DEVICES
    assert cpu_devices.set_elsewhere({}) and cpu_devices.wanted_count(auto, [128], {}, 4) is None


def test_a_different_count_once_jax_has_started_is_refused_in_one_line():
    from jaxrec.errors import InputError

    have = len(cpu_devices.jax.devices("cpu"))  # the tests' process has started JAX with 8 devices
    cpu_devices.split_host(Config(cpu_devices=have), [8])  # the same count: nothing to do
    cpu_devices.split_host(Config(), [8])  # automatic: keeps what JAX has
    with pytest.raises(InputError, match=f"--cpu_devices {have + 1}: JAX has already started with {have} CPU"):
        cpu_devices.split_host(Config(cpu_devices=have + 1), [8])


@pytest.mark.slow
def test_the_command_line_splits_the_cpu_as_told():
    # One device per core when not told: tests/training/test_loop.py's script test (the same setup path).
    told = run_script("jaxrec", *TINY_BENCHMARK, "--batch_size", "9", "--cpu_devices", "3", default_devices=True)
    assert told.returncode == 0, told.stderr[-2000:]
    assert json.loads(told.stdout)["num_devices"] == 3
    # A device count the user's XLA_FLAGS set is kept: tests/models/test_rnn.py's script test (8 devices).
