"""`Config` and `BenchmarkOptions`: each field carries its help text and rule; the command line, `config.json` and
`summary.json` follow from the fields (docs/development.md, Conventions; docs/design.md, "The command line")."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import typing
from pathlib import Path
from typing import Any, Literal, Sequence

from jaxrec.config.rules import (Rule, above, at_least, cores_at_most, field_problems, field_types, fields_with,
                                 in_range, is_number, knob, knob_group, sizes_at_least, values_of, zero_or_at_least)
from jaxrec.errors import InputError

# The built-in recipes by --model name, with their modules (jaxrec.models.recipes loads them).
MODELS = {"cnn": "jaxrec.models.cnn", "rnn": "jaxrec.models.rnn", "resnet18": "jaxrec.models.resnet",
          "resnet20": "jaxrec.models.resnet", "airbench94": "jaxrec.models.airbench"}
Norm = Literal["none", "batch"]
Schedule = Literal["constant", "cosine", "step", "linear"]
Channels = Literal[0, 1, 3]
Resize = Literal["stretch", "crop"]
ModelAxis = Literal["loop", "vmap"]
Distributed = Literal["auto", "on", "off"]
ConvImpl = Literal["auto", "lax", "patch"]
Pool = Literal["auto", "lax", "reshape_grad"]
BatchNormKernel = Literal["auto", "flax", "matmul"]
StepsLoop = Literal["auto", "rolled", "unrolled"]
Flip = Literal["none", "random", "alternating"]
LossReduction = Literal["mean", "sum"]
Tta = Literal[0, 1, 2]
Dtype = Literal["auto", "float32", "bfloat16"]
Input = Literal["auto", "device", "stream"]


SEED_LIMIT = 2**32  # jax.random.key wraps larger seeds around (2**32 gives key 0's numbers)
# The independent sources of randomness of a run, each with a seed of its own (`<source>_seed`).
SOURCES = ("init", "order", "augment", "split")
# How a program that trains several models holds them (jaxrec.core.parallel.make_program).
MODEL_AXES = typing.get_args(ModelAxis)


def is_host_port(value: Any) -> bool:
    """Whether `value` is 'HOST:PORT' with a port in 1-65535 ([v6]:PORT too)."""
    host, _, port = str(value).rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def frozen(value: Any) -> Any:
    """`value` with its lists (as JSON gives them back) as tuples."""
    return tuple(frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def is_folder_path(dataset: str) -> bool:
    """Whether --dataset is written as a path (data/x, ./x, ~/x, /x) rather than a name (cifar10, a sample's)."""
    return "/" in str(dataset) or str(dataset).startswith((".", "~"))


def is_recipe_file(model: str) -> bool:
    """Whether --model names a recipe file (a path ending in .py) rather than a built-in."""
    return str(model).endswith(".py")


def optional_seed() -> Rule:
    return Rule(lambda v: v is None or (is_number(v) and 0 <= v < SEED_LIMIT), f"unset or in [0, {SEED_LIMIT})")


# Each field's group and roles (its group's and its `also=`): docs/development.md, Conventions.
HOW = ("execution", "resume", "study")  # how the run computes, not what: may change on resume and in a study
data = knob_group("data")
network = knob_group("model")
optim = knob_group("optimisation")
run = knob_group("run")
checkpoint = knob_group("checkpoints", *HOW, "untimed")
execution = knob_group("execution", *HOW)
process = knob_group("processes", *HOW)


# Settings that were Config fields before they moved into a built-in recipe's own knobs, by recipe:
# config.json files and checkpoints written before the move still load (another model never read them).
MOVED_TO_KNOBS = {"rnn": ("rnn_cell", "rnn_hidden", "rnn_layers", "rnn_bidirectional"),
                  "airbench94": ("whiten", "whiten_images", "whiten_bias_epochs", "dirac_init", "logit_scale")}


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a training run. Defaults reproduce the article's CIFAR-10 CNN; a recipe with
    defaults of its own (airbench94, a file's DEFAULTS) takes them from
    `jaxrec.models.config_for(model, **changes)`, as `--model` does on the command line."""

    # Data.
    dataset: str = data("cifar10", "TFDS name (cifar10, cifar100, mnist, fashion_mnist, ...), 'cifar10_sample' (the "
                        "small real sample shipped in the package), or a path to an image folder laid out "
                        "<root>/<split>/<class>/<image>.",
                        Rule(lambda v: bool(v.strip()), "a TFDS name, cifar10_sample or an image-folder path"),
                        also=("resume", "study", "evaluation", "untimed"))
    data_dir: str | None = data(None, "TFDS data directory holding prepared data sets (default: TFDS's own, usually "
                                "~/tensorflow_datasets).", also=("resume", "study", "evaluation", "untimed"))
    download: bool = data(False, "Let TFDS download and prepare a missing data set (needs internet).",
                          also=("resume", "untimed"))
    train_split: str = data("train", "Split to train on.", also=("untimed",))
    eval_split: str = data("test", "Split to evaluate on.", also=("evaluation", "untimed"))
    image_size: int = data(0, "Resize images to image_size x image_size; 0: an image folder's median size (the common "
                           "size when most images share one), a TFDS set's own.",
                           zero_or_at_least(8), also=("untimed",))
    channels: Channels = data(0, "Convert images to 1 (grayscale) or 3 (RGB) channels; 0: gray if most of an image "
                              "folder's images are, a TFDS set's own.", also=("untimed",))
    resize: Resize = data("stretch", "How an image of another size is brought to the run's: stretch (scaled to it, "
                          "bilinear; another aspect ratio is squashed) or crop (scaled to cover it, keeping the "
                          "aspect ratio, and centre-cropped: what ImageNet-style photos expect).", also=("untimed",))
    test_fraction: float = data(0.2, "For an image folder without split folders (<root>/<class>/<image>): the "
                                "fraction of each class's images held out for evaluation, drawn with the seed.",
                                in_range(0, 1, low_open=True), also=("untimed",))
    input: Input = data("auto", "How training and evaluation read the data: device (every split decoded once into "
                        "memory and copied onto each device: the fastest), stream (each batch read and decoded as it "
                        "is needed, by --data_workers processes: for data larger than memory; the same batches as "
                        "device) or auto (device where the data fits the memory check, else stream).",
                        also=("execution", "resume", "study", "evaluation", "untimed"))
    data_workers: int = data(0, "--input stream: processes that decode batches ahead of the training step (0: threads "
                             "of the training process do it); at most the CPU cores this process may use.",
                             cores_at_most(), also=("execution", "resume", "study", "evaluation", "untimed"))
    min_images_per_class: int = data(1, "Image folders: drop classes with fewer images than this (counted in the "
                                     "training split, or in the whole class when the split is made here).",
                                     at_least(1), also=("untimed",))

    # Model.
    model: str = network("cnn", "The recipe: a built-in, cnn (the article's CNN), rnn (a recurrent network reading "
                         "one image row per time step, see the rnn_* knobs), resnet18 (CIFAR stem, 11.2M parameters), "
                         "resnet20 (He et al.'s CIFAR ResNet, 0.27M) or airbench94 (Keller Jordan's 94%-in-seconds "
                         "CIFAR-10 net), or the path of a recipe file of your own (my_recipe.py: docs/recipes.md). A "
                         "recipe's DEFAULTS become the defaults of the other flags.",
                         Rule(lambda v: v in MODELS or is_recipe_file(v), f"one of {', '.join(MODELS)}, or a recipe "
                              f"file ending in .py"))
    conv_features: tuple[int, ...] = network((32, 64, 128, 128), "Output channels of the conv blocks (3x3 conv -> "
                                             "ReLU -> 2x2 max-pool each), comma separated; airbench94: the widths of "
                                             "its conv groups.", sizes_at_least(1))
    dense_features: int = network(512, "Width of the hidden dense layer.", at_least(1))
    norm: Norm = network("none", "Normalisation after each convolution of model=cnn: none (the article's network) or "
                         "batch (BatchNorm, its statistics over the global batch, across devices and processes).")
    norm_momentum: float = network(0.9, "BatchNorm's running statistics: running = m x running + (1 - m) x batch "
                                   "(PyTorch's momentum 0.1 is 0.9 here).", in_range(0, 1))
    norm_epsilon: float = network(1e-5, "BatchNorm's epsilon, added to the variance.", above(0))
    dtype: Dtype = network("auto", "Compute type of airbench94's and the ResNets' convolutions and matmuls: float32, "
                           "or bfloat16 (parameters, optimizer state, BatchNorm statistics and the loss stay "
                           "float32); auto: float32 on the CPU, bfloat16 on GPUs and TPUs. The cnn and rnn compute in "
                           "float32.")
    # A recipe's own knobs (its Knobs dataclass: jaxrec.models.recipes); each is a flag of its own.
    knobs: tuple = network((), "The recipe's own settings, as (name, value) pairs.", also=("no_flag",))

    # Optimisation.
    epochs: int | float = optim(10, "Number of passes over the training set; a fraction trains part of the last one.",
                                above(0), also=("resume", "untimed"))
    max_steps: int = optim(0, "End training after this many optimizer steps, wherever that falls in an epoch, then "
                           "evaluate and write the summary (0: train every --epochs). The schedule stays that of "
                           "--epochs: for smoke runs.", at_least(0), also=("resume", "untimed"))
    batch_size: int = optim(128, "Global training batch size, split evenly across devices.", at_least(1))
    eval_batch_size: int = optim(1000, "Global evaluation batch size (the last batch is padded and masked).",
                                 at_least(1), also=("resume", "evaluation"))
    learning_rate: float = optim(0.01, "Peak learning rate of SGD.", above(0))
    momentum: float = optim(0.9, "SGD momentum (0 for plain SGD).", in_range(0, 1))
    nesterov: bool = optim(False, "Use Nesterov momentum (needs momentum > 0).")
    weight_decay: float = optim(0.0, "L2 weight decay added to the gradient, as PyTorch's SGD does.", at_least(0))
    decoupled: bool = optim(False, "airbench's form of learning_rate and weight_decay: both per 1,024 examples, the "
                            "step's learning rate is learning_rate / (1024 x (1 + 1/(1 - momentum))) and the decay "
                            "added to the gradient weight_decay x batch_size / learning_rate.")
    norm_bias_lr_scale: float = optim(1.0, "BatchNorm biases train at this times the learning rate, with the same "
                                      "learning rate x decay product.", above(0))
    lr_schedule: Schedule = optim("constant", "Learning-rate schedule: constant, cosine, step (x0.1 at 50% and 75% of "
                                  "training) or linear (after the warm-up, linearly down to final_lr_fraction x "
                                  "learning_rate at the last step).")
    warmup_epochs: float = optim(0.0, "Linear warm-up from warmup_start x learning_rate to learning_rate over this "
                                 "many epochs.", at_least(0))
    warmup_fraction: float = optim(0.0, "The same warm-up over this fraction of all steps instead (int(steps x f)).",
                                   in_range(0, 1))
    warmup_start: float = optim(0.0, "Where the warm-up starts, as a fraction of learning_rate.", in_range(0, 1))
    final_lr_fraction: float = optim(0.0, "lr_schedule linear: the learning rate it ends at, as a fraction of "
                                     "learning_rate.", in_range(0, 1))
    label_smoothing: float = optim(0.0, "Label smoothing of the cross-entropy targets (0 = none).", in_range(0, 1))
    loss_reduction: LossReduction = optim("mean", "The training loss over the batch: mean, or sum (the gradient "
                                          "grows with the batch). Reported losses are means either way.")
    lookahead: bool = optim(False, "airbench94's lookahead: every lookahead_every steps an average of every float "
                            "variable (BatchNorm statistics too) moves toward the network, ema = lerp(ema, net, 1 - "
                            "a), and the network is set to it; a = lookahead_decay^every x (step/steps)^3; at the end "
                            "the network becomes the average.")
    lookahead_every: int = optim(5, "Steps between lookahead updates.", at_least(1))
    lookahead_decay: float = optim(0.95, "Per-step decay of the lookahead average at the end of training.",
                                   in_range(0, 1))
    augment: bool = optim(False, "Random crop with 4-pixel zero padding and horizontal flip, on the device.")
    translate: int = optim(0, "Reflect-pad each training image by this many pixels and crop it back at a random "
                           "offset, a new one every epoch.", at_least(0))
    flip: Flip = optim("none", "Horizontal flips of training images: none, random (each image, every epoch), or "
                       "alternating (each image flipped at random once, the whole set flipped again on odd epochs).")
    tta: Tta = optim(0, "Test-time augmentation of the final evaluation and of predict: 0 none, 1 the mean of the "
                     "image and its mirror, 2 also the mirrored views shifted by one pixel. The per-epoch "
                     "evaluations use none.", also=("evaluation", "untimed"))

    # Run.
    seed: int = run(0, "Seed of every random number in the run: each source of randomness below takes it unless its "
                    "own seed is set.", in_range(0, SEED_LIMIT), also=("per_member",))
    init_seed: int | None = run(None, "Seed of the parameter initialisation (default: --seed).",
                                optional_seed(), also=("per_member", "untimed"))
    order_seed: int | None = run(None, "Seed of the data order, a new permutation each epoch (default: --seed).",
                                 optional_seed(), also=("per_member", "untimed"))
    augment_seed: int | None = run(None, "Seed of the augmentation's crops and flips (default: --seed).",
                                   optional_seed(), also=("per_member", "untimed"))
    split_seed: int | None = run(None, "Seed of the held-out part of an image folder without split folders (default: "
                                 "--seed).", optional_seed(), also=("per_member", "untimed"))
    eval_every_epochs: int = run(1, "Evaluate on eval_split every this many epochs (and always at the end).",
                                 at_least(1), also=("resume", "untimed"))
    top_k: int = run(5, "Report top-k accuracy for this k (clipped to the number of classes).",
                     at_least(1), also=("resume", "evaluation", "untimed"))
    progress: bool = run(True, "Show a progress bar per epoch.",
                         also=("execution", "resume", "study", "per_process", "untimed"))
    save_predictions: bool = run(False, "Also write the eval split's class probabilities and labels at the end "
                                 "(test_predictions.npz; seed studies use them).", also=("resume", "study", "untimed"))
    tensorboard: bool = run(False, "Also write TensorBoard event files to WORKDIR/tensorboard (train loss and "
                            "accuracy per device call, test scores per evaluation); needs tensorboardX (pip install "
                            "'jaxrec[tensorboard]'). View with `tensorboard --logdir runs/`.",
                            also=("execution", "resume", "study", "untimed"))
    workdir: str | None = run(None, "Where outputs go (default: runs/<model>_<dataset>_seed<seed>).",
                              also=("execution", "resume", "study", "per_member", "untimed"))

    # Checkpoints (Orbax, in <workdir>/checkpoints).
    force_workdir: bool = checkpoint(False, "Write into a --workdir that holds files not written by jaxrec (refused "
                                     "otherwise, so nobody's folder is overwritten by mistake).")
    resume: bool = checkpoint(True, "Continue from the latest checkpoint in the workdir if it holds one; false starts "
                              "over (the previous run is moved to WORKDIR/replaced-<time>/, not deleted).")
    checkpoint_every_steps: int = checkpoint(0, "Also save a checkpoint every this many training steps (0: only at "
                                             "the end of every epoch, which is always saved). A run also saves when "
                                             "interrupted. Best a multiple of steps_per_call: other values give calls "
                                             "of other lengths, each compiled once.", at_least(0))
    checkpoint_keep: int = checkpoint(3, "Keep this many most recent checkpoints, plus the best one by test accuracy.",
                                      at_least(1))

    # Execution: how the run computes, not what (beyond float rounding).
    num_devices: int = execution(0, "Local devices to use; 0 uses all of them.", at_least(0), also=("evaluation",))
    cpu_devices: int = execution(0, "CPU only: split the CPU into this many JAX devices before JAX starts, each "
                                 "training its share of the batch; 0: one per core (at most as many as divide "
                                 "batch_size), unless XLA_FLAGS or JAX_NUM_CPU_DEVICES sets a count or processes are "
                                 "joined (then one per process). The count changes float rounding.",
                                 at_least(0), also=("evaluation",))
    cpu_ynn: bool = execution(True, "XLA:CPU: keep convolutions on XLA's own kernels and matmuls on YNNPACK "
                              "(--xla_cpu_experimental_ynn_fusion_type=dot in XLA_FLAGS, set before JAX starts on the "
                              "jaxlib versions known to have it, unless XLA_FLAGS names it). XLA's default hands "
                              "convolutions to YNNPACK, where they train about 2.5x slower; false leaves XLA's "
                              "default. Changes float rounding.")
    steps_per_call: int = execution(10, "Training steps compiled into one device call (lax.scan); more means less "
                                    "host overhead, 1 is the plain one-step loop.", at_least(1))
    image_conv: ConvImpl = execution("auto", "Convolution over the image itself (at most 4 channels): lax (XLA's) or "
                                     "patch (one patch matmul, faster on XLA:CPU); auto: by platform (docs/speed.md).")
    eval_image_conv: ConvImpl = execution("auto", "image_conv for evaluation and prediction (the forward pass alone, "
                                          "where XLA:CPU's convolution is the faster one); auto: by platform.")
    conv_grad: ConvImpl = execution("auto", "Kernel gradient of the other convolutions (more than 4 input channels): "
                                    "lax (XLA's) or patch (one patch matmul, faster on XLA:CPU); auto: by platform.")
    pool: Pool = execution("auto", "2x2 max-pooling: lax (nn.max_pool) or reshape_grad (same values and gradient, a "
                           "gradient XLA:CPU runs far faster); auto: by platform.")
    batch_norm: BatchNormKernel = execution("auto", "airbench94's BatchNorm: flax (nn.BatchNorm) or matmul (the same, "
                                            "its per-channel sums as matmuls, faster on XLA:CPU); auto: by platform.")
    steps_loop: StepsLoop = execution("auto", "The steps of one device call: rolled (lax.scan's loop) or unrolled "
                                      "(XLA:CPU runs convolutions in a loop far slower); auto: by platform.")

    # Processes (one run over several hosts or processes with jax.distributed; docs/multi_host.md).
    distributed: Distributed = process("auto", "Join the run's processes with jax.distributed: auto (when "
                                       "--coordinator_address or JAX_COORDINATOR_ADDRESS is set, or under srun or "
                                       "mpirun with several tasks), on (always: JAX detects the cluster, e.g. a Cloud "
                                       "TPU pod slice), off (one process).")
    coordinator_address: str | None = process(None, "HOST:PORT of process 0's coordinator, the same for every process "
                                              "(default: JAX_COORDINATOR_ADDRESS, else detected).",
                                              Rule(lambda v: v is None or is_host_port(v),
                                                   "HOST:PORT, a port in 1-65535"))
    num_processes: int = process(0, "Processes in the run, with --coordinator_address (0: detected).", at_least(0))
    process_id: int | None = process(None, "This process's index in [0, num_processes), with --coordinator_address.",
                                     Rule(lambda v: v is None or (is_number(v) and v >= 0), "unset or >= 0"),
                                     also=("per_process",))
    heartbeat_timeout: int = process(60, "Seconds without a heartbeat after which a process counts as dead: the "
                                     "others then stop (non-zero exit) instead of waiting for it.", at_least(5))
    join_timeout: int = process(300, "Seconds a process waits at start-up for the run's other processes to join; then "
                                "it stops with one line naming the flags to check.", at_least(1))

    def __post_init__(self):
        # A recipe file is recorded by its absolute path: a resume, evaluation or prediction from another
        # folder finds the same file, and one at another path is another recipe.
        if is_recipe_file(self.model) and not Path(self.model).is_absolute():
            object.__setattr__(self, "model", str(Path(self.model).absolute()))
        # So is a data set given as a path: a run or study continued or evaluated from another folder reads it.
        if is_folder_path(self.dataset) and not Path(self.dataset).is_absolute():
            object.__setattr__(self, "dataset", os.path.abspath(os.path.expanduser(self.dataset)))
        # Pairs in name order, lists (from JSON) as tuples: equal knobs give equal, hashable configs.
        object.__setattr__(self, "knobs", tuple(sorted((str(k), frozen(v)) for k, v in dict(self.knobs).items())))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    @property
    def model_tag(self) -> str:
        """A short name for the recipe, usable in paths: a built-in's name, a file's stem."""
        return Path(self.model).stem if is_recipe_file(self.model) else self.model

    @property
    def dataset_tag(self) -> str:
        """A short name for the data set, usable in paths."""
        return Path(self.dataset).name or "data"

    def source_seeds(self) -> dict[str, int]:
        """The seed of each source of randomness (SOURCES): its own if set, else `seed`."""
        own = {source: getattr(self, f"{source}_seed") for source in SOURCES}
        return {source: self.seed if value is None else value for source, value in own.items()}

    def without_seeds(self) -> "Config":
        """This config with its seeds and workdir cleared: runs that differ only in those share one compiled program."""
        return self.replace(seed=0, workdir=None, **{f"{source}_seed": None for source in SOURCES})

    @property
    def data_plan(self) -> "DataPlan":
        """What the data layer reads: the data group's settings, with the split seed resolved."""
        return DataPlan(**{**values_of(self, DataPlan), "split_seed": self.source_seeds()["split"]})

    @property
    def optimisation(self) -> "Optimisation":
        """What the optimizer and the training step read: the optimisation group's settings."""
        return Optimisation(**values_of(self, Optimisation))

    def default_workdir(self) -> str:
        return str(Path("runs") / f"{self.model_tag}_{self.dataset_tag}_seed{self.seed}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """The inverse of to_dict (lists become tuples, unknown keys are dropped); MOVED_TO_KNOBS become knobs."""
        values = dict(values)
        moved = {name: values.pop(name) for names in MOVED_TO_KNOBS.values() for name in names if name in values}
        own = {name: value for name, value in moved.items() if name in MOVED_TO_KNOBS.get(values.get("model"), ())}
        if own:
            values["knobs"] = {**own, **dict(values.get("knobs") or ())}
        hints = field_types(cls)  # one per field
        return cls(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v
                      for k, v in values.items() if k in hints})

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    """What to time and how long; the model and batch sizes come from the Config."""

    image_shape: tuple[int, ...] = knob((32, 32, 3), "Shape of one random uint8 image, height,width,channels.",
                                        Rule(lambda v: len(v) == 3 and min(v) >= 1, "three integers >= 1"))
    num_classes: int = knob(10, "Number of classes of the random labels.", at_least(2))
    train_examples: int = knob(10_000, "Random training images kept on the device; batches are drawn from them.",
                               at_least(1))
    eval_examples: int = knob(10_000, "Random evaluation images; one timed window evaluates all of them.",
                              at_least(1))
    windows: int = knob(5, "Timed windows; the median is reported.", at_least(1))
    calls_per_window: int = knob(4, "Training calls (of --steps_per_call steps) per timed window.", at_least(1))
    warmup_calls: int = knob(2, "Untimed training calls after compilation.", at_least(0))
    matmul_size: int = knob(0, "Side of the square float32 matmul that measures the peak FLOP/s "
                            "(0: 2048 on CPU, 8192 else).", at_least(0))
    # Also jaxrec study's flags.
    seeds_per_program: int = knob(1, "Models trained side by side in one compiled program (same results with "
                                  "--model_axis loop; on a CPU one at a time is as fast, see docs/studies.md); in a "
                                  "benchmark, training images/s count every model's images.", at_least(1))
    model_axis: ModelAxis = knob("loop", "How a program holds its models: loop (written out one after another: each "
                                 "model's arithmetic is a plain run's) or vmap (jax.vmap: grouped convolutions, "
                                 "float-rounding differences, 3x slower on XLA:CPU).")


def group_settings(name: str, group: str, extra: Sequence[tuple[str, str, Any]] = ()) -> type:
    """A frozen dataclass of Config's fields of `group` (and `extra` ones), so the group needs no second list."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(Config)
              if f.metadata["group"] == group]
    made = dataclasses.make_dataclass(name, fields + [(n, t, dataclasses.field(default=d)) for n, t, d in extra],
                                      frozen=True)
    made.__module__ = __name__  # make_dataclass takes `module` only from Python 3.12
    return made


DataPlan = group_settings("DataPlan", "data", [("split_seed", "int", 0)])  # the data layer's (jaxrec.data)
Optimisation = group_settings("Optimisation", "optimisation")  # the core's: optimizer, objective, augmentation
EXECUTION_FIELDS = fields_with(Config, "execution")
EVALUATION_FIELDS = fields_with(Config, "evaluation")  # what an evaluation of a trained run may set anew
MAY_CHANGE_ON_RESUME = fields_with(Config, "resume")   # jaxrec.run.checkpoints
MAY_CHANGE_IN_STUDY = fields_with(Config, "study")     # jaxrec.studies.study
PER_PROCESS_FIELDS = fields_with(Config, "per_process")
MEMBER_FIELDS = fields_with(Config, "per_member")
BENCHMARK_UNUSED = fields_with(Config, "untimed")


def combination_problems(config: Config) -> list[str]:
    """Settings that are each allowed but do not work together."""
    problems = []
    if config.nesterov and config.momentum == 0:
        problems.append("--nesterov with --momentum 0: Nesterov needs momentum > 0; drop --nesterov or set "
                        "--momentum")
    if config.warmup_epochs > config.epochs:
        problems.append(f"--warmup_epochs {config.warmup_epochs} with --epochs {config.epochs}: the warm-up would "
                        f"never reach the learning rate; must be <= --epochs")
    if config.num_processes and config.process_id is not None and config.process_id >= config.num_processes:
        problems.append(f"--process_id {config.process_id} with --num_processes {config.num_processes}: must be in "
                        f"[0, {config.num_processes})")
    if config.warmup_epochs and config.warmup_fraction:
        problems.append("--warmup_epochs with --warmup_fraction: they set the same warm-up; drop one of them")
    if config.final_lr_fraction and config.lr_schedule != "linear":
        problems.append(f"--final_lr_fraction with --lr_schedule {config.lr_schedule}: only the linear schedule ends "
                        f"there; use --lr_schedule linear or drop --final_lr_fraction")
    if config.augment and (config.translate or config.flip != "none"):
        problems.append("--augment with --translate or --flip: --augment is its own crop and flip; use one or the "
                        "other")
    if config.data_workers and config.input == "device":
        problems.append(f"--data_workers {config.data_workers} with --input device: workers only read streamed data; "
                        f"drop --data_workers, or pass --input stream (or auto, which streams what does not fit)")
    if config.distributed == "off" and config.coordinator_address:
        problems.append("--coordinator_address with --distributed off: drop one of them")
    return problems


TENSORBOARDX_MISSING = ("--tensorboard needs tensorboardX, which is not installed; pip install 'jaxrec[tensorboard]' "
                        "(from a clone: pip install -e '.[tensorboard]'), or drop --tensorboard")


def settings_problems(settings: Any, only: Sequence[str] | None = None) -> list[str]:
    """One line per value (of the fields in `only`) of `settings` that cannot be used; a full check of a Config also
    refuses its combinations and the packages its settings need, found without importing them (a light check)."""
    problems = field_problems(settings, only)
    if isinstance(settings, Config) and only is None and not problems:
        problems = combination_problems(settings)
        if settings.tensorboard and importlib.util.find_spec("tensorboardX") is None:
            problems.append(TENSORBOARDX_MISSING)
    return problems


def refuse(problems: Sequence[str]) -> None:
    """Raises InputError with one line per problem, if there is any."""
    if problems:
        raise InputError("\n".join(problems) if len(problems) == 1 else
                         f"{len(problems)} settings cannot be used:\n" + "\n".join(problems))


def check(settings: Any, only: Sequence[str] | None = None) -> Any:
    """`settings` if every value (of the fields in `only`) is usable; else InputError with one line per problem."""
    refuse(settings_problems(settings, only))
    return settings
