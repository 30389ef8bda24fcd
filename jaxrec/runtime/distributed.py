"""One run over several processes (docs/multi_host.md): joining them with jax.distributed, and what the loop asks of
them: whether this is the primary process, whether any was asked to stop, and to wait for the others."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxrec.config import PER_PROCESS_FIELDS, Config
from jaxrec.errors import InputError
from jaxrec.runtime.interrupt import watch_signals
from jaxrec.runtime.supervisor import LOST, LOST_MARK, wanted
from jaxrec.runtime.xla_flags import jaxlib_version

log = logging.getLogger(__name__)
T = TypeVar("T")

# From this jaxlib on, an XLA:CPU program that JAX's persistent compilation cache hands back hangs in its first
# collective across processes (on 0.12.1, every resumed run whose step was cached; 0.10.2 runs them fine; 0.11 untried).
CPU_CACHE_HANGS_FROM = (0, 11)


def start(config: Config) -> None:
    """Joins the run's processes when `wanted`, before anything else uses JAX, and checks they share their settings."""
    if not wanted(config) or jax.distributed.is_initialized():
        return
    # CPU devices of different processes run their collectives over gloo (TCP); accelerators ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = {"coordinator_address": config.coordinator_address, "process_id": config.process_id,
                "num_processes": config.num_processes or None}
    if config.process_id == 0 and config.coordinator_address:
        _check_port_free(config.coordinator_address)
    log.info("joining the run's processes at %s as process %s of %s; waiting up to %d s (--join_timeout)",
             config.coordinator_address or "the detected coordinator",
             "?" if config.process_id is None else config.process_id, config.num_processes or "?", config.join_timeout)
    try:
        with _join_watch(config):
            jax.distributed.initialize(**{k: v for k, v in explicit.items() if v is not None},
                                       initialization_timeout=config.join_timeout + 60,  # the watch ends it first
                                       heartbeat_timeout_seconds=config.heartbeat_timeout,
                                       shutdown_timeout_seconds=config.heartbeat_timeout)
    except (RuntimeError, ValueError, IndexError) as err:  # JAX's messages for a launch it cannot make sense of
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        raise InputError(f"cannot join the run's processes with jax.distributed: {first}. Give every process the "
                         f"same --coordinator_address HOST:PORT and --num_processes N, and each its own "
                         f"--process_id (docs/multi_host.md)") from None
    log.info("process %d of %d: %d local devices of %d in all (%s)", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
    _skip_cache_if_it_hangs()
    check_agreement("settings", {k: v for k, v in config.to_dict().items() if k not in PER_PROCESS_FIELDS},
                    "start every process with the same command; only --process_id differs")


def _skip_cache_if_it_hangs() -> None:
    """Turns JAX's persistent compilation cache off in a multi-process CPU run where a cached program hangs
    (CPU_CACHE_HANGS_FROM); before any compile, as JAX decides on the cache at its first."""
    if jax.default_backend() != "cpu" or jaxlib_version() < CPU_CACHE_HANGS_FROM:
        return
    if jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir:
        log.info("not using the compilation cache in %s: on jaxlib %d.%d a cached program of a multi-process CPU "
                 "run hangs in its collectives (docs/multi_host.md)", jax.config.jax_compilation_cache_dir,
                 *jaxlib_version())
    jax.config.update("jax_enable_compilation_cache", False)


def _check_port_free(address: str) -> None:
    """Process 0 hosts the coordinator: a taken port is refused before the others wait on it."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as err:
            raise InputError(f"--coordinator_address {address}: process 0 cannot listen on port {port} "
                             f"({err.strerror or err}); another run may hold it: choose another port for every "
                             "process") from None


@contextlib.contextmanager
def _join_watch(config: Config) -> Iterator[None]:
    """While jax.distributed.initialize blocks in C++, Python's signal handlers cannot run and JAX's own timeout
    ends in an abort, so a thread watches: SIGINT, SIGTERM or --join_timeout end the process at once, in one line."""
    who = f"process {config.process_id}" if config.process_id is not None else "this process"
    deadline = time.monotonic() + config.join_timeout

    def on_signal(signum: int, done: threading.Event) -> None:
        os.write(2, f"stopped by {signal.Signals(signum).name} while {who} waited for the run's other processes to "
                    "join; nothing was trained. Run the same command again to start.\n".encode())
        os._exit(128 + signum)

    def on_tick(done: threading.Event) -> None:
        if time.monotonic() > deadline and not done.is_set():
            os.write(2, f"error: {who} waited {config.join_timeout} s (--join_timeout) for "
                        f"{config.num_processes or 'the'} processes of the run to join at "
                        f"{config.coordinator_address or 'the detected coordinator'}; check that every process was "
                        "started, with the same --coordinator_address and --num_processes and each its own "
                        "--process_id in 0..N-1\n".encode())
            os._exit(2)

    with watch_signals(lambda *_: None, on_signal, on_tick):  # placeholders: the wakeup fd needs a Python handler
        yield


def check_agreement(what: str, values: dict[str, Any], fix: str) -> None:
    """Every process's `values` (JSON-able) are process 0's, or every process stops with the same one
    line naming the first field that differs and both values. Every process must call it."""
    if jax.process_count() == 1:
        return
    payload = np.frombuffer(json.dumps(values, sort_keys=True, default=str).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array(len(payload), np.int32))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:len(payload)] = payload
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    every = [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, lengths)]
    for process, other in enumerate(every[1:], start=1):
        different = [k for k in sorted(set(every[0]) | set(other)) if every[0].get(k) != other.get(k)]
        if different:
            name = different[0]
            raise InputError(f"the run's processes disagree on their {what}: {name} is {every[0].get(name)!r} in "
                             f"process 0 and {other.get(name)!r} in process {process}"
                             + (f" ({len(different) - 1} more differ)" if len(different) > 1 else "") + f"; {fix}")


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
    return int(np.asarray(multihost_utils.process_allgather(np.array(value, np.int32))).max())


def leave_after_lost_process(err: BaseException, heartbeat_timeout: int) -> None:
    """Ends this process within `heartbeat_timeout` s if `err` is a collective's on a lost process; else returns."""
    lost = ("UNAVAILABLE", "heartbeat", "Connection reset", "Connection closed", "Gloo")
    if type(err).__name__ != "JaxRuntimeError" or jax.process_count() == 1 or not any(w in str(err) for w in lost):
        return
    first = str(err).strip().splitlines()[0][:300]
    os.write(2, f"{LOST_MARK}{first}; process {jax.process_index()} ends within {heartbeat_timeout} s "
                "(--heartbeat_timeout). Rerun every process with the same command to resume from the last "
                "checkpoint.\n".encode())
    time.sleep(heartbeat_timeout + 10)
    os._exit(LOST)


def on_primary(work: Callable[[], T], what: str) -> T | None:
    """Runs `work` on process 0 only (its result there, None elsewhere); an InputError there stops every process,
    as the others would otherwise wait in their next collective until the heartbeat timeout. All must call it."""
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
        multihost_utils.sync_global_devices(name)
