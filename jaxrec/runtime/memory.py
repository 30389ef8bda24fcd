"""How much memory a run would take and how much there is: a run that cannot fit is refused in one
line, with the figures and the flag to change, before anything is decoded or compiled."""

from __future__ import annotations

import functools
import math
import os
import resource
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import InputError
from jaxrec.models.conv import patch_conv

FLOAT_BYTES = 4
# A data worker process's own memory: an interpreter with NumPy, Pillow and Grain (about 200 MiB each).
WORKER_BYTES = 256 << 20
READ_AHEAD = 4  # batches a reader keeps ready, per worker (jaxrec.data.stream.BUFFER)
# Training holds parameters, gradients and momentum; and each layer's output plus its gradient.
PARAMETER_COPIES = 3
ACTIVATION_COPIES = 2
PATCH_COPIES = 2  # a patch matrix, and the gradient a kernel's patch matmul takes from it


def human(count: float) -> str:
    """Bytes as '737 MiB' / '4.1 TiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count, power = count / 1024, power + 1
    return f"{count:.1f} {units[power]}" if power >= 3 else f"{count:.0f} {units[power]}"


def host_available() -> int | None:
    """Bytes of RAM the OS can give without swapping (MemAvailable), or None if unknown; less if `ulimit -v` caps it."""
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


def shortfall(need: int, have: int | None, what: str) -> str | None:
    """The line that says `what` needs more than the `have` bytes available (unknown: no check), or None."""
    if have is not None and need > have:
        return f"{what} needs about {human(need)} of memory and {human(have)} is available"
    return None


def require(need: int, have: int | None, what: str, fix: str) -> None:
    """Raises InputError when `need` bytes exceed `have` (unknown: no check)."""
    problem = shortfall(need, have, what)
    if problem:
        raise InputError(f"{problem}; {fix}")


def check_images_fit(count: int, size: tuple[int, int], channels: int, chosen_by: str) -> None:
    """Refuses to decode `count` images (uint8) beyond RAM, naming the largest --image_size that fits."""
    have = host_available()
    need = count * size[0] * size[1] * channels
    largest = math.isqrt((have or 0) // max(count * channels, 1))  # named only where `need` does not fit
    require(need, have, f"decoding {count} images at {size[0]}x{size[1]}x{channels} ({chosen_by})",
            f"pass --image_size {largest} or less" if largest >= 1 else "use fewer images")


@functools.lru_cache(maxsize=64)
def layer_floats(model: nn.Module, image_shape: tuple[int, int, int],
                 forward_only: bool = False) -> tuple[int, int, int]:
    """Per image, from shapes only: (floats of every layer's output, of the largest im2col patch matrix a convolution
    builds (training: any kernel gradient's; forward: patch_conv's only), parameter count)."""
    patches = [0]

    def builds_patches(module: nn.Module) -> bool:
        return not forward_only or getattr(module, "conv_general_dilated", None) is patch_conv

    def count_patches(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__" and builds_patches(context.module):
            window = int(np.prod(context.module.kernel_size)) * int(args[0].shape[-1])
            patches.append(window * int(np.prod(out.shape[1:-1])))
        return out

    def init(images):
        with nn.intercept_methods(count_patches):
            return model.init_with_output(jax.random.key(0), images, capture_intermediates=True)[1]

    variables = jax.eval_shape(init, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
    return size(variables.get("intermediates", {})) + int(np.prod(image_shape)), max(patches), size(variables["params"])


def training_bytes(model: nn.Module, image_shape: tuple[int, int, int], batch_per_device: int) -> int:
    """One device's memory for training `model`, estimated: parameters, gradients and momentum; each layer's output
    and its gradient; the largest patch matrix and its gradient (which dominate a narrow network on large images)."""
    activations, patches, params = layer_floats(model, image_shape)
    per_image = ACTIVATION_COPIES * activations + PATCH_COPIES * patches
    return FLOAT_BYTES * (PARAMETER_COPIES * params + batch_per_device * per_image)


def evaluation_bytes(model: nn.Module, image_shape: tuple[int, int, int], batch_per_device: int,
                     views: int = 1) -> int:
    """One device's memory for an evaluation call's forward pass (beside the training state), estimated: the parameters,
    and per test-time-augmentation view the view itself, every layer's output and the largest patch matrix."""
    activations, patches, params = layer_floats(model, image_shape, forward_only=True)
    per_view = activations + patches + int(np.prod(image_shape))
    return FLOAT_BYTES * (params + batch_per_device * views * per_view)


def device_bytes(model: nn.Module, image_shape: tuple[int, int, int], batch_per_device: int,
                 evaluation: tuple[nn.Module, int, int] | None = None, models: int = 1) -> int:
    """One device's memory: `models` models' training or, where larger, their state beside an `evaluation` call."""
    training = models * training_bytes(model, image_shape, batch_per_device)
    if evaluation is None:
        return training
    evaluated, eval_share, views = evaluation
    state = models * FLOAT_BYTES * PARAMETER_COPIES * layer_floats(model, image_shape)[2]
    return max(training, state + evaluation_bytes(evaluated, image_shape, eval_share, views))


def reader_bytes(batch_bytes: int, image_bytes: int, workers: int) -> int:
    """Host memory of one streamed reader: its worker processes (or this process's threads), the
    batches they keep ready and the one being copied out, and each decoder's source and resized image."""
    readers = max(workers, 1)
    return workers * WORKER_BYTES + (readers * READ_AHEAD + 1) * batch_bytes + 2 * readers * image_bytes


def check_training_fits(model: nn.Module, batch_shape: tuple[int, int, int, int], devices: list[jax.Device],
                        data_bytes: int, models: int = 1, evaluation: tuple[nn.Module, int, int] | None = None) -> None:
    """Refuses (InputError) training that would not fit: `device_bytes` for this process's `batch_shape` [batch, H, W,
    C] and `evaluation` (eval model, batch per device, views), plus `data_bytes` per device (CPU: in host RAM)."""
    batch_size, image_shape = batch_shape[0], tuple(batch_shape[1:])
    per_device = device_bytes(model, image_shape, max(batch_size // len(devices), 1), evaluation, models) + data_bytes
    on_cpu = devices[0].platform == "cpu"
    need = per_device * len(devices) if on_cpu else per_device
    where = f"{len(devices)} CPU device(s)" if on_cpu else f"each {devices[0].platform} device"
    flags = (["--batch_size"] + (["--eval_batch_size"] if evaluation else []) + ["--image_size"]
             + (["--num_devices"] if on_cpu and len(devices) > 1 else [])
             + (["--seeds_per_program"] if models > 1 else []))
    require(need, device_available(devices[0]),
            f"training {models} model(s) on {'x'.join(map(str, image_shape))} images in batches of {batch_size} "
            f"on {where}", f"lower {', '.join(flags[:-1])} or {flags[-1]}")


def largest(fits: Callable[[int], bool], high: int, step: int = 1) -> int:
    """The largest multiple of `step` up to `high` where `fits` (true below some value, false above) holds, or 0."""
    low, high = 0, high // step
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle * step) else (low, middle - 1)
    return low * step
