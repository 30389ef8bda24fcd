"""What a run leaves in its workdir: config.json, dataset.json, metrics.jsonl, summary.json, curves.png."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "tensorflow-datasets", "numpy")


def versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on, plus Python's."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    devices = jax.local_devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "local_devices": len(devices), "processor": platform.processor() or platform.machine(),
            "host": platform.node()}


def write_json(path: Path, payload: Any) -> None:
    """Writes JSON atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Writes one JSON record per line, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(records: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and test, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in records]
    evaluated = [r for r in records if "test_loss" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    ax_loss.plot([r["epoch"] for r in evaluated], [r["test_loss"] for r in evaluated], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in records], "o-", label="train")
    ax_acc.plot([r["epoch"] for r in evaluated], [100 * r["test_accuracy"] for r in evaluated], "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
