"""How this process was launched: whether it joins other processes, and how it says it lost them. No JAX here:
a multi-process command's supervisor reads this, and importing JAX would slow its launch."""

from __future__ import annotations

import os
from typing import Mapping

from jaxrec.config import Config

# Launchers that start several copies of a command, and the variable that counts them.
LAUNCHER_TASKS = {"srun": "SLURM_STEP_NUM_TASKS", "mpirun": "OMPI_COMM_WORLD_SIZE"}
LOST = 1  # exit code of a process that lost a peer
# How a process says that a collective failed because a peer is gone; its supervisor makes it the user's one line.
LOST_MARK = "jaxrec: lost contact with the run's other processes: "


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
