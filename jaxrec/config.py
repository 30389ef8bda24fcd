"""The one config object: every knob of a run, with its default and what it does.

`Config` is a frozen dataclass. `parse_args` builds a command-line parser from its fields (each
field is a `--name` flag, its help text is the comment in `metadata`), so a new knob is added in
exactly one place and shows up in `--help`, in the saved `config.json` and in `summary.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Sequence


def _knob(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a training run. Defaults reproduce the article's CIFAR-10 CNN."""

    # Data.
    dataset: str = _knob("cifar10", "TFDS name (cifar10, cifar100, mnist, fashion_mnist, ...), "
                         "'cifar10_sample' (the small real sample shipped in the package), or a "
                         "path to an image folder laid out <root>/<split>/<class>/<image>.")
    data_dir: str | None = _knob(None, "TFDS data directory holding prepared data sets "
                                 "(default: TFDS's own, usually ~/tensorflow_datasets).")
    download: bool = _knob(False, "Let TFDS download and prepare a missing data set (needs internet).")
    train_split: str = _knob("train", "Split to train on.")
    eval_split: str = _knob("test", "Split to evaluate on.")
    image_size: int = _knob(0, "Resize images to image_size x image_size; 0 keeps the data set's own size.")
    channels: int = _knob(0, "Convert images to 1 (grayscale) or 3 (RGB) channels; 0 keeps the data set's own.")
    test_fraction: float = _knob(0.2, "For an image folder without split folders (<root>/<class>/<image>): the "
                                 "fraction of each class's images held out for evaluation, drawn with the seed.")
    min_images_per_class: int = _knob(1, "Image folders: drop classes with fewer images than this (counted in "
                                      "the training split, or in the whole class when the split is made here).")

    # Model.
    model: str = _knob("cnn", "Model name from jaxrec.models: cnn (the article's CNN) or rnn (a recurrent "
                       "network reading one image row per time step, see the rnn_* knobs).")
    conv_features: tuple[int, ...] = _knob((32, 64, 128, 128), "Output channels of the conv blocks "
                                           "(3x3 conv -> ReLU -> 2x2 max-pool each), comma separated.")
    dense_features: int = _knob(512, "Width of the hidden dense layer.")
    rnn_cell: str = _knob("lstm", "Recurrent cell of model=rnn: tanh (the article's simple RNN), lstm or gru.")
    rnn_hidden: int = _knob(256, "Hidden units per direction of each recurrent layer (model=rnn).")
    rnn_layers: int = _knob(1, "Stacked recurrent layers (model=rnn).")
    rnn_bidirectional: bool = _knob(False, "Also read the rows bottom-up and classify from both final "
                                    "states (model=rnn).")

    # Optimisation.
    epochs: int = _knob(10, "Number of passes over the training set.")
    batch_size: int = _knob(128, "Global training batch size, split evenly across devices.")
    eval_batch_size: int = _knob(1000, "Global evaluation batch size (the last batch is padded and masked).")
    learning_rate: float = _knob(0.01, "Peak learning rate of SGD.")
    momentum: float = _knob(0.9, "SGD momentum (0 for plain SGD).")
    nesterov: bool = _knob(False, "Use Nesterov momentum.")
    weight_decay: float = _knob(0.0, "L2 weight decay added to the gradient, as PyTorch's SGD does.")
    lr_schedule: str = _knob("constant", "Learning-rate schedule: constant, cosine or step "
                             "(x0.1 at 50% and 75% of training).")
    warmup_epochs: float = _knob(0.0, "Linear warm-up from 0 to learning_rate over this many epochs.")
    label_smoothing: float = _knob(0.0, "Label smoothing of the cross-entropy targets (0 = none).")
    augment: bool = _knob(False, "Random crop with 4-pixel padding and horizontal flip, on the device.")

    # Run.
    seed: int = _knob(0, "Seed of every random number in the run (init, shuffling, augmentation).")
    num_devices: int = _knob(0, "Local devices to train on; 0 uses all of them.")
    steps_per_call: int = _knob(10, "Training steps compiled into one device call (lax.scan); "
                                "more means less host overhead, 1 is the plain one-step loop.")
    eval_every_epochs: int = _knob(1, "Evaluate on eval_split every this many epochs (and always at the end).")
    top_k: int = _knob(5, "Report top-k accuracy for this k (clipped to the number of classes).")
    progress: bool = _knob(True, "Show a progress bar per epoch.")
    workdir: str | None = _knob(None, "Where outputs go (default: runs/<model>_<dataset>_seed<seed>).")

    # Checkpoints (Orbax, in <workdir>/checkpoints).
    resume: bool = _knob(True, "Continue from the latest checkpoint in the workdir if it holds one; false "
                         "starts over (the old checkpoints are moved aside, not deleted).")
    checkpoint_every_steps: int = _knob(0, "Also save a checkpoint every this many training steps (0: only at the "
                                        "end of every epoch, which is always saved). A run also saves when "
                                        "interrupted. Best a multiple of steps_per_call: other values give calls of "
                                        "other lengths, each compiled once.")
    checkpoint_keep: int = _knob(3, "Keep this many most recent checkpoints, plus the best one by test accuracy.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    @property
    def dataset_tag(self) -> str:
        """A short name for the data set, usable in paths."""
        return Path(self.dataset).name or "data"

    def default_workdir(self) -> str:
        return str(Path("runs") / f"{self.model}_{self.dataset_tag}_seed{self.seed}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """The inverse of to_dict (JSON lists become tuples again); unknown keys are ignored."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v
                      for k, v in values.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}")


def _flag_type(annotation: Any):
    """Maps a field's type annotation to an argparse converter."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is tuple:
        return _parse_int_tuple
    if args:  # Optional[X] / X | None
        return _flag_type(args[0])
    return {bool: _parse_bool, int: int, float: float, str: str}[annotation]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the script docstring's layout."""


def build_parser(description: str | None = None, defaults: Config | None = None,
                 aliases: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """A parser with one `--field` flag per Config field; booleans also accept a bare `--flag`.

    aliases: extra flag names for fields, e.g. {"data": "dataset"} makes `--data` mean `--dataset`.
    """
    defaults = defaults or Config()
    extra: dict[str, list[str]] = {}
    for alias, field_name in (aliases or {}).items():
        extra.setdefault(field_name, []).append(f"--{alias}")
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        kind = _flag_type(hints[field.name])
        default = getattr(defaults, field.name)
        kwargs: dict[str, Any] = dict(type=kind, default=default, help=field.metadata["help"].replace("%", "%%"),
                                      metavar=field.name.upper())
        if kind is _parse_bool:
            kwargs.update(nargs="?", const=True, metavar="BOOL")
        parser.add_argument(f"--{field.name}", *extra.get(field.name, ()), dest=field.name, **kwargs)
        parser.set_defaults(**{field.name: default})
    return parser


def parse_args(argv: Sequence[str] | None = None, description: str | None = None,
               defaults: Config | None = None, aliases: dict[str, str] | None = None) -> Config:
    """Parses command-line flags into a Config (see build_parser for aliases)."""
    namespace = build_parser(description, defaults, aliases).parse_args(argv)
    return Config(**vars(namespace))
