"""When a process joins others (jaxrec.runtime.supervisor.wanted), and the launch settings' checks. The
multi-process runs themselves are in test_multiprocess.py."""

import pytest

from helpers import run_script
from jaxrec.runtime import distributed
from jaxrec.runtime.supervisor import wanted
from jaxrec.config import Config, check
from jaxrec.errors import InputError


@pytest.mark.parametrize("config,environ,joins", [
    (Config(), {}, False),
    (Config(), {"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "1"}, False),  # one task: a plain run
    (Config(), {"SLURM_STEP_NUM_TASKS": "4"}, True),
    (Config(), {"OMPI_COMM_WORLD_SIZE": "2"}, True),
    (Config(), {"OMPI_COMM_WORLD_SIZE": "not a number"}, False),
    (Config(), {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    (Config(coordinator_address="localhost:1234", num_processes=2, process_id=1), {}, True),
    (Config(distributed="off"), {"SLURM_STEP_NUM_TASKS": "4"}, False),
    (Config(distributed="on"), {}, True),
])
def test_a_process_joins_others_only_when_launched_as_one_of_several(config, environ, joins):
    assert wanted(config, environ) is joins


@pytest.mark.parametrize("changes,message", [
    ({"num_processes": 2, "process_id": 2}, "--process_id 2 with --num_processes 2: must be in [0, 2)"),
    ({"distributed": "off", "coordinator_address": "localhost:1"}, "--coordinator_address with --distributed off"),
    ({"process_id": -1}, "--process_id -1: must be unset or >= 0"),
    ({"heartbeat_timeout": 1}, "--heartbeat_timeout 1: must be >= 5"),
    ({"coordinator_address": "not-an-address"}, "--coordinator_address not-an-address: must be HOST:PORT"),
    ({"coordinator_address": "localhost:99999"}, "must be HOST:PORT, a port in 1-65535"),
    ({"join_timeout": 0}, "--join_timeout 0: must be >= 1"),
])
def test_launch_settings_that_cannot_work_are_refused(changes, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check(Config(**changes))


def test_a_single_process_is_primary_and_agrees_with_itself():
    assert distributed.is_primary() and distributed.label() == ""
    assert distributed.max_over_processes(15) == 15
    distributed.leave_after_lost_process(ValueError("not a lost process"), heartbeat_timeout=5)  # returns


def test_a_launch_jax_cannot_make_sense_of_ends_in_one_line(tmp_path):
    ended = run_script("jaxrec", "train", "--dataset", "cifar10_sample", "--workdir", str(tmp_path),
                       "--coordinator_address", "localhost:1", "--num_processes", "2")  # no --process_id
    assert ended.returncode == 2
    last = ended.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot join the run's processes") and "--process_id" in last
    assert "Traceback" not in ended.stderr and not (tmp_path / "checkpoints").exists()
