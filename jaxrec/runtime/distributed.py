"""One run over several processes: joining them with jax.distributed, and what the loop asks of them.

The runtime is JAX's own. Every process runs the same command; `start` joins them (before any other
JAX call), after which `jax.devices()` lists every process's devices, the pmapped steps' collectives
span them all, and Orbax checkpoints with every process taking part. The loop asks this module only
whether it is the primary process (the one that writes outputs), whether any process was asked to
stop (`max_over_processes` of their signals), and to wait for the others (`barrier`). See docs/multi_host.md.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Mapping, TypeVar

import jax
import numpy as np

from jaxrec.config import Config
from jaxrec.errors import InputError

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a process waits at start-up for the others to join before it gives up.
JOIN_TIMEOUT_SECONDS = 300
# Launchers that start several copies of a command, and the variable that counts them.
LAUNCHER_TASKS = {"srun": "SLURM_STEP_NUM_TASKS", "mpirun": "OMPI_COMM_WORLD_SIZE"}


def wanted(config: Config, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process should join others (see Config.distributed)."""
    if config.distributed != "auto":
        return config.distributed == "on"
    if config.coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(_count(environ.get(variable)) > 1 for variable in LAUNCHER_TASKS.values())


def _count(value: str | None) -> int:
    try:
        return int(value or 1)
    except ValueError:
        return 1


def start(config: Config) -> None:
    """Joins the run's processes with jax.distributed.initialize when `wanted`; else does nothing.

    Must run before anything else uses JAX (the command line calls it first). A process that cannot
    join (a wrong address, a missing process) stops with one line within JOIN_TIMEOUT_SECONDS.
    """
    if not wanted(config) or jax.distributed.is_initialized():
        return
    # CPU devices of different processes exchange their collectives through gloo (over TCP);
    # accelerators use their own links and ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = {"coordinator_address": config.coordinator_address, "process_id": config.process_id,
                "num_processes": config.num_processes or None}
    try:
        jax.distributed.initialize(**{k: v for k, v in explicit.items() if v is not None},
                                   initialization_timeout=JOIN_TIMEOUT_SECONDS,
                                   heartbeat_timeout_seconds=config.heartbeat_timeout,
                                   shutdown_timeout_seconds=config.heartbeat_timeout)
    except (RuntimeError, ValueError) as err:  # JAX's messages for a launch it cannot make sense of
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        raise InputError(f"cannot join the run's processes with jax.distributed: {first}. Give every process the "
                         f"same --coordinator_address HOST:PORT and --num_processes N, and each its own "
                         f"--process_id (docs/multi_host.md)") from None
    log.info("process %d of %d: %d local devices of %d in all (%s)", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)


def is_primary() -> bool:
    """Whether this process writes the run's outputs (process 0; a single process always does)."""
    return jax.process_index() == 0


def label() -> str:
    """'' for a single process, else 'process I/N ' for log lines."""
    return f"process {jax.process_index()}/{jax.process_count()} " if jax.process_count() > 1 else ""


def max_over_processes(value: int) -> int:
    """The largest of every process's `value`. Every process must call it at the same point."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils  # noqa: PLC0415 - only multi-process runs need it
    return int(np.asarray(multihost_utils.process_allgather(np.array(value, np.int32))).max())


def leave_after_lost_process(err: BaseException, heartbeat_timeout: int) -> None:
    """If `err` is a failed collective of a multi-process run (another process died or its host went
    away), prints one line and waits for JAX's runtime, which ends this process within
    `heartbeat_timeout` seconds naming the process it lost; exits 1 itself if it has not by then.
    Returns (doing nothing) for any other error."""
    lost = ("UNAVAILABLE", "heartbeat", "Connection reset", "Connection closed", "Gloo")
    if type(err).__name__ != "JaxRuntimeError" or jax.process_count() == 1 or not any(w in str(err) for w in lost):
        return
    first = str(err).strip().splitlines()[0][:300]
    os.write(2, f"error: process {jax.process_index()} lost contact with the run's other processes ({first}); "
                f"JAX's runtime stops this process within {heartbeat_timeout} s (--heartbeat_timeout) and names "
                f"the lost process. Rerun every process with the same command to resume from the last "
                f"checkpoint.\n".encode())
    time.sleep(heartbeat_timeout + 10)
    os._exit(1)


def on_primary(work: Callable[[], T], what: str) -> T | None:
    """Runs `work` on process 0 only (its result there, None elsewhere). If it refuses (InputError),
    every process stops with an InputError, not only process 0: the others would otherwise wait
    for it in their next collective until the heartbeat timeout. Every process must call it."""
    result, refused = None, None
    if is_primary():
        try:
            result = work()
        except InputError as err:
            refused = err
    if max_over_processes(int(refused is not None)):
        raise refused or InputError(f"process 0 refused {what}; its error line says why")
    return result


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier called `name`."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415
        multihost_utils.sync_global_devices(name)


__all__ = ["barrier", "leave_after_lost_process", "on_primary", "is_primary", "label", "max_over_processes", "start", "wanted"]
