"""How much memory a run would take and how much there is: a run that cannot fit is refused in one
line, with the figures and the flag to change, before anything is decoded or compiled."""

from __future__ import annotations

import math
import os
import resource

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import InputError

FLOAT_BYTES = 4
# Training holds parameters, gradients and momentum; and each layer's output plus its gradient.
PARAMETER_COPIES = 3
ACTIVATION_COPIES = 2


def human(count: float) -> str:
    """Bytes as '737 MiB' / '4.1 TiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count, power = count / 1024, power + 1
    return f"{count:.1f} {units[power]}" if power >= 3 else f"{count:.0f} {units[power]}"


def host_available() -> int | None:
    """Bytes of RAM the OS can give without swapping (MemAvailable), or None where unknown; less where
    the process's address space is capped (`ulimit -v`) and the cap leaves less."""
    known = [left for left in (_ram_available(), _address_space_left()) if left is not None]
    return min(known) if known else None


def _ram_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """What RLIMIT_AS leaves beyond the address space this process already maps, or None if uncapped."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(limit - mapped, 0)


def device_available(device: jax.Device) -> int | None:
    """Free bytes on an accelerator (None where it does not say; a CPU device uses host RAM)."""
    if device.platform == "cpu":
        return host_available()
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def require(need: int, have: int | None, what: str, fix: str) -> None:
    """Raises InputError when `need` bytes exceed `have` (unknown: no check)."""
    if have is not None and need > have:
        raise InputError(f"{what} needs about {human(need)} of memory and {human(have)} is available; {fix}")


def check_images_fit(count: int, size: tuple[int, int], channels: int, chosen_by: str) -> None:
    """Refuses to decode `count` images at `size` x `channels` (uint8) when they cannot fit in RAM,
    naming the largest --image_size that would."""
    have = host_available()
    need = count * size[0] * size[1] * channels
    if have is None or need <= have:
        return
    largest = math.isqrt(have // max(count * channels, 1))
    require(need, have, f"decoding {count} images at {size[0]}x{size[1]}x{channels} ({chosen_by})",
            f"pass --image_size {largest} or less" if largest >= 1 else "use fewer images")


def training_bytes(model: nn.Module, image_shape: tuple[int, int, int], batch_per_device: int) -> int:
    """An estimate of one device's memory for training `model`: parameters, gradients and momentum,
    and every layer's output and gradient for a batch. From shapes only: nothing is computed."""
    def init(images):
        return model.init_with_output(jax.random.key(0), images, capture_intermediates=True)[1]

    variables = jax.eval_shape(init, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
    per_image = size(variables.get("intermediates", {})) + int(np.prod(image_shape))
    floats = PARAMETER_COPIES * size(variables["params"]) + ACTIVATION_COPIES * batch_per_device * per_image
    return FLOAT_BYTES * floats


def check_training_fits(model: nn.Module, image_shape: tuple[int, int, int], batch_size: int,
                        devices: list[jax.Device], data_bytes: int, models: int = 1) -> None:
    """Refuses a training run whose `models` models (a seed group trains several side by side), batch
    and on-device data set (`data_bytes`, every split, held once) would not fit on its devices. CPU
    devices share the host's RAM, each with its own copy of the data."""
    per_device = models * training_bytes(model, image_shape, max(batch_size // len(devices), 1)) + data_bytes
    on_cpu = devices[0].platform == "cpu"
    need = per_device * len(devices) if on_cpu else per_device
    where = f"{len(devices)} CPU device(s)" if on_cpu else f"each {devices[0].platform} device"
    flags = ["--batch_size", "--image_size"] + (["--num_devices"] if on_cpu and len(devices) > 1 else []) + (
        ["--seeds_per_program"] if models > 1 else [])
    require(need, device_available(devices[0]),
            f"training {models} model(s) on {'x'.join(map(str, image_shape))} images in batches of {batch_size} "
            f"on {where}", f"lower {', '.join(flags[:-1])} or {flags[-1]}")
