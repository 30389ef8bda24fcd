"""Orbax checkpoints of a whole run, so that an interrupted run resumes exactly where it stopped (docs/checkpoints.md).

The `checkpoint_keep` latest and the best by test accuracy are kept by a preservation policy: Orbax's `max_to_keep`
with a `best_fn` would delete the newest, so resume could go back in time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxrec.config import MAY_CHANGE_ON_RESUME, Config
from jaxrec.core.optim import uses_total_steps
from jaxrec.core.pipeline import Preprocess
from jaxrec.core.run_state import RunState
from jaxrec.core.state import TrainState, Variables, create_train_state
from jaxrec.core.tta import with_tta
from jaxrec.errors import InputError, SaveError, os_error_cause
from jaxrec.models import create_model
from jaxrec.models.kernels import resolved_dtype
from jaxrec.models.recipes import load, recorded_recipe_problem
from jaxrec.run import storage_noise
from jaxrec.run.workdir import STUDY_SPEC_FILE
from jaxrec.runtime import host

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_METRIC = "test_accuracy"


def checkpoint_dir(workdir: str | Path) -> Path:
    return Path(workdir).expanduser().absolute() / CHECKPOINT_DIR


def latest_checkpoint_step(workdir: str | Path) -> int:
    """The step of a workdir's newest finished checkpoint (0 if it has none), without restoring it."""
    directory = checkpoint_dir(workdir)
    return max(ocp.utils.checkpoint_steps(directory), default=0) if directory.is_dir() else 0


def _best_metric(metrics: dict[str, float]) -> float:
    # Checkpoints saved mid-epoch were not evaluated: they rank below every evaluated one.
    return metrics.get(BEST_METRIC, float("-inf"))


def _manager(directory: Path, keep: int = 1, read_only: bool = False) -> ocp.CheckpointManager:
    storage_noise.install()
    keep_policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=_best_metric, n=1),
    ])
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    if read_only:  # Orbax warns that read-only means read-only, three times; evaluate/predict need no news
        absl_log.setLevel(logging.ERROR)
    try:
        options = ocp.CheckpointManagerOptions(
            best_fn=_best_metric, best_mode="max", preservation_policy=keep_policy,
            enable_async_checkpointing=not read_only, cleanup_tmp_directories=not read_only, read_only=read_only)
        return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    finally:
        absl_log.setLevel(level)


def _arrays(state: TrainState) -> dict[str, Any]:
    """A train state's data (apply_fn, tx: code, rebuilt from the config); model state and averaged weights if any."""
    arrays = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
    if state.model_state:
        arrays["model_state"] = state.model_state
    if state.averaged is not None:
        arrays["averaged"] = state.averaged
    return arrays


def state_items(state: TrainState) -> list[str]:
    """The items a checkpoint of `state` holds, the model state's by collection (e.g. 'model_state/batch_stats')."""
    arrays = _arrays(state)
    names = [name for name in arrays if name != "model_state"]
    return sorted(names + [f"model_state/{name}" for name in arrays.get("model_state", {})])


def array_checksum(tree: Any) -> str:
    """SHA-256 of every array of `tree` (dtype, shape and bytes, in tree order): docs/checkpoints.md, Damage."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        # in the dtype it restores as (a Python int step is saved and restored as int32)
        array = np.ascontiguousarray(jax.device_get(leaf), dtype=jnp.result_type(leaf))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _short(err: Exception) -> str:
    """An error's first line, at most 200 characters, without TensorStore's spec (which runs to pages)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(" See full TensorStore details")[0]
    return f"{type(err).__name__}: {text[:200]}"


def field_differences(saved: dict[str, Any], current: dict[str, Any], may_change: Iterable[str],
                      names: tuple[str, str] = ("checkpoint", "now")) -> list[str]:
    """The fields of two Config.to_dict()s that differ, but those in `may_change`, one line each labelled by
    `names`; `saved` is read with Config.from_dict, so a field it lacks counts as its default."""
    saved = json.loads(json.dumps(Config.from_dict(saved).to_dict()))  # tuples as JSON lists
    current = json.loads(json.dumps(current))
    skip = set(may_change)
    return [f"{name} ({names[0]}: {saved[name]!r}, {names[1]}: {value!r})"
            for name, value in current.items() if name not in skip and saved[name] != value]


def config_differences(saved: dict[str, Any], config: Config) -> list[str]:
    """Fields whose value in a checkpoint's config differs from `config` and may not change on resume
    (--epochs neither, where the run's numbers depend on its length: optim.uses_total_steps)."""
    may_change = set(MAY_CHANGE_ON_RESUME) - ({"epochs"} if uses_total_steps(config.optimisation) else set())
    return field_differences(saved, config.to_dict(), may_change)


DATA_IDENTITY = ("class_names", "image_shape", "train_examples", "mean", "std")  # of DataSplits.describe()


def data_differences(saved: dict[str, Any], current: dict[str, Any],
                     names: tuple[str, str] = ("checkpoint", "now")) -> list[str]:
    """The DATA_IDENTITY fields that differ between the data set a checkpoint was trained on and the one loaded now
    (its path may move), one line each labelled by `names`."""
    return [f"{key} ({names[0]}: {saved.get(key)!r}, {names[1]}: {current[key]!r})" for key in DATA_IDENTITY
            if not _same_value(key, json.loads(json.dumps(current[key])), saved.get(key))]


def _same_value(key: str, current: Any, saved: Any) -> bool:
    """Equal; mean and std to 1e-9 relative: past the rounding of summing in another order, within any pixel change."""
    if key in ("mean", "std") and isinstance(saved, list) and len(saved) == len(current):
        return bool(np.allclose(current, saved, rtol=1e-9, atol=0))
    return current == saved


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """The JSON half of a checkpoint: where the run stands, and what it was trained with."""

    run: RunState
    config: dict[str, Any]   # Config.to_dict() of the run (a dict: a later jaxrec may add fields)
    dataset: dict[str, Any]  # DataSplits.describe(): name, class names, image shape, mean, std, sizes
    test_accuracy: float | None = None  # set on checkpoints saved right after an evaluation
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    saved: str = ""
    checksum: str = ""  # array_checksum of the saved arrays
    items: list[str] = dataclasses.field(default_factory=list)  # state_items of the saved state
    compute_dtype: str | None = None  # what the model computed in (--dtype auto resolved); None: not recorded
    recipe: dict[str, str] | None = None  # a recipe file's path and sha256 (Recipe.record); None: a built-in

    def to_json(self) -> dict[str, Any]:
        # JSON round trip: a snapshot the loop cannot change while Orbax serialises it; non-JSON fails here, not later.
        return json.loads(json.dumps({**dataclasses.asdict(self), "run": self.run.to_json()}))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CheckpointMeta":
        """The meta CheckpointMeta.to_json wrote; fields this version does not know are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        return cls(**{**values, "run": RunState.from_json(values["run"])})


@dataclasses.dataclass(frozen=True)
class Restored:
    """A train state restored from a checkpoint (on the first device), with its meta."""

    state: TrainState
    meta: CheckpointMeta


def _orbax_save_errors(record: logging.LogRecord) -> bool:
    """Log filter: drops the tracebacks Orbax logs from its save threads (RunCheckpointer.save reports one line)."""
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


class RunCheckpointer:
    """Saves and restores the checkpoints of one run (one workdir)."""

    def __init__(self, workdir: str | Path, config: Config):
        self.directory = checkpoint_dir(workdir)
        self.config = config
        self.recipe = load(config.model).record()  # the text this run's model was built from, at its start
        self.manager = _manager(self.directory, keep=max(1, config.checkpoint_keep))
        logging.getLogger("absl").addFilter(_orbax_save_errors)  # once: addFilter skips one it holds
        self.failed = False  # a save failed: the manager's threads are in an unknown state, do not wait on them
        self.last_saved_step: int | None = self.manager.latest_step()

    def save(self, state: TrainState, run: RunState, dataset: dict[str, Any],
             test_accuracy: float | None = None) -> None:
        """Saves `state` (unreplicated) and `run` at run.step and waits until it is on disk: SaveError if it fails,
        FloatingPointError for NaN/inf learnt arrays (docs/checkpoints.md, Crashes and Save failures)."""
        arrays = jax.device_get(_arrays(state))  # one host copy for the checks, the checksum and Orbax
        learnt = {name: value for name, value in arrays.items() if name not in ("opt_state", "step")}
        if not all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(learnt)):
            raise FloatingPointError(
                f"the parameters or model state hold NaN or inf at step {run.step}; no checkpoint was written (the "
                f"last good one is step {self.last_saved_step} in {self.directory}). Lower --learning_rate or add "
                f"--warmup_epochs.")
        meta = CheckpointMeta(run=run, config=self.config.to_dict(), dataset=dataset, test_accuracy=test_accuracy,
                              versions=host.versions(), saved=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              checksum=array_checksum(arrays), items=state_items(state),
                              compute_dtype=resolved_dtype(self.config), recipe=self.recipe)
        metrics = {BEST_METRIC: float(test_accuracy)} if test_accuracy is not None else {}
        try:
            self.manager.save(run.step, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
                                                                meta=ocp.args.JsonSave(meta.to_json())),
                              metrics=metrics, force=True)
            self.manager.wait_until_finished()
        except Exception as err:  # noqa: BLE001 - whatever the storage layer raises, the run must stop here
            # TensorStore's threads go on to print dozens of tracebacks: jaxrec.run.storage_noise drops them.
            self.failed = True
            last = f"step {self.last_saved_step}" if self.last_saved_step is not None else "none yet"
            code = re.search(r"os_error_code='?(\d+)", str(err))  # the OS error TensorStore reports, if any
            cause = os_error_cause(int(code.group(1))) if code else _short(err)
            raise SaveError(f"cannot save the checkpoint of step {run.step} to {self.directory}: "
                            f"{cause}. The last good checkpoint: {last}. Free space (or raise the "
                            f"limit) and run the same command again to resume") from err
        self.last_saved_step = run.step

    def restore_latest(self, template: TrainState, dataset: dict[str, Any]) -> Restored | None:
        """The newest usable checkpoint restored into `template`'s structure, or None if there is none. Raises
        InputError if none can be read, or it was written with another config or other data than `dataset`."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for i, step in enumerate(steps):
            meta = _read_meta_or_none(self.manager, step)
            if meta is None:
                continue
            check_resumable(meta, self.config, step, self.directory)
            # Before the arrays: other classes give other shapes, which would read as a damaged checkpoint.
            different = data_differences(meta.dataset, dataset)
            if different:
                raise InputError(f"the checkpoint at step {step} in {self.directory} was trained on other data: "
                                 f"{'; '.join(different)}. Pass the same data set, or start over with "
                                 f"--resume=false (or another --workdir).")
            restored = _restore(self.manager, step, template, meta)
            if restored is None:
                continue
            self._move_aside(steps[:i])
            return restored
        if steps:  # more likely an incompatible jaxrec version than every save having failed
            raise InputError(f"none of the checkpoints in {self.directory} (steps {steps}) can be read (see the "
                             f"warnings above). Start over with --resume=false (they are moved aside, not "
                             f"deleted) or use another --workdir.")
        return None

    def _move_aside(self, steps: list[int]) -> None:
        """Moves unusable checkpoints aside (the run saves those steps again), kept for a post-mortem. Only process 0
        moves them; the others restored the same step and skip them too."""
        if not steps or jax.process_index() != 0:
            return
        aside = self.directory.with_name(f"{CHECKPOINT_DIR}.unreadable")
        aside.mkdir(exist_ok=True)
        for step in steps:
            for path in self.directory.glob(f"{step}"):
                path.rename(aside / f"{path.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning("moved unusable checkpoint(s) %s to %s", steps, aside)
        self.manager.reload()

    def close(self) -> None:
        if self.failed:
            return
        self.manager.wait_until_finished()
        self.manager.close()


def _restore(manager: ocp.CheckpointManager, step: int, template: TrainState, meta: CheckpointMeta) -> Restored | None:
    """Restores one step, whose meta is `meta`; None (with a warning) if it cannot be read. Checks the items first."""
    _check_items(meta, template, step, manager.directory)
    # On the first local device, whatever the number of devices the checkpoint was written with.
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x), sharding=sharding),
                                    _arrays(template))
    try:
        arrays = saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    except Exception as err:  # noqa: BLE001
        try:
            saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
            arrays = _by_path(saved, target)
        except Exception:  # noqa: BLE001 - the first error says why
            log.warning("checkpoint step %d in %s cannot be restored (%s); trying another", step, manager.directory,
                        _short(err))
            return None
    saved = jax.device_get(saved)  # checked as written: NaN/inf, or other bytes than the saved checksum's
    leaves = map(np.asarray, jax.tree_util.tree_leaves(saved))
    if not all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating)):
        damage = "its arrays hold NaN or inf"
    elif array_checksum(saved) != meta.checksum:
        damage = "its arrays do not match the checksum saved with them"
    else:
        return Restored(state=template.replace(**arrays), meta=meta)
    log.warning("checkpoint step %d in %s is damaged: %s; trying another", step, manager.directory, damage)
    return None


def _by_path(saved: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """`target`'s arrays read by path from `saved` (restored as written), for an optimizer state holding groups the run
    no longer builds (an older jaxrec's empty groups): those are left; anything else missing or reshaped raises."""
    if set(saved) != set(target) or any(len(jax.tree_util.tree_leaves(saved[name])) !=
                                        len(jax.tree_util.tree_leaves(target[name])) for name in target if
                                        name != "opt_state"):
        raise ValueError("the checkpoint holds other arrays than the run's")

    def read(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> jax.Array:
        node = saved
        for key in path:  # a dict's key, a named tuple's field (saved as a dict), a tuple's index
            node = node[key.key if hasattr(key, "key") else key.name if hasattr(key, "name") else key.idx]
        if np.shape(node) != leaf.shape:
            raise ValueError(f"{jax.tree_util.keystr(path)} has shape {np.shape(node)}, not {leaf.shape}")
        return jax.device_put(np.asarray(node, leaf.dtype), leaf.sharding)

    return jax.tree_util.tree_map_with_path(read, target)


def check_resumable(meta: CheckpointMeta, config: Config, step: int, directory: Path) -> None:
    """Raises InputError if the checkpoint trained with other settings or recipe than `config`, or in another type than
    --dtype gives here; where the type was recorded, it alone is compared, so --dtype itself may change."""
    saved = meta.config if meta.compute_dtype is None else {**meta.config, "dtype": config.dtype}
    different = config_differences(saved, config)
    if different:
        raise InputError(
            f"the checkpoint at step {step} in {directory} was written with another config: "
            f"{'; '.join(different)}. Use the checkpoint's settings to resume it, or start over with "
            f"--resume=false (or another --workdir).")
    changed = recorded_recipe_problem(meta.recipe, f"the checkpoint at step {step} in {directory}")
    if changed:
        raise InputError(f"{changed}; or start over with --resume=false (or another --workdir)")
    now = resolved_dtype(config)
    if meta.compute_dtype is not None and meta.compute_dtype != now:
        raise InputError(
            f"the checkpoint at step {step} in {directory} trained in {meta.compute_dtype} (--dtype "
            f"{meta.config.get('dtype')}) and --dtype {config.dtype} computes in {now} here; pass --dtype "
            f"{meta.compute_dtype} to resume it as it trained, or start over with --resume=false (or another "
            f"--workdir)")


def _check_items(meta: CheckpointMeta, template: TrainState, step: int, directory: Path) -> None:
    """Refuses a checkpoint whose items are not the model's (docs/checkpoints.md, Model state is never reset)."""
    saved, needed = set(meta.items), set(state_items(template))
    if saved == needed:
        return
    missing, extra = sorted(needed - saved), sorted(saved - needed)
    what = (f"lacks {', '.join(missing)}, which the model needs" if missing else
            f"holds {', '.join(extra)}, which the model does not have")
    raise InputError(f"the checkpoint at step {step} in {directory} {what} (it was written for another model or "
                     f"by an older jaxrec); start over with --resume=false (or another --workdir), or train the run "
                     f"again")


def _read_meta_or_none(manager: ocp.CheckpointManager, step: int) -> CheckpointMeta | None:
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if all(key in meta for key in ("run", "checksum", "items")):
            return CheckpointMeta.from_json(meta)
    except Exception as err:  # noqa: BLE001 - any failure to read means "skip this checkpoint"
        log.warning("checkpoint step %d in %s is unreadable (%s); trying another", step, manager.directory,
                    _short(err))
        return None
    # A jaxrec before 0.2 wrote no run, checksum or items.
    raise InputError(f"the checkpoint at step {step} in {manager.directory} was written by jaxrec before 0.2, "
                     f"whose checkpoints this version does not read; train the run again (--resume=false keeps "
                     f"the old one aside), or read it with jaxrec 0.2")


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model as saved by a run: enough to evaluate it or classify new images."""

    config: Config
    variables: Variables  # what evaluation applies (TrainState.eval_variables), on the first device
    step: int
    epoch: int
    dataset: dict[str, Any]  # what dataset.json holds: name, class_names, image_shape, mean, std, ...
    test_accuracy: float | None
    which: str = "best"  # the checkpoint it is: 'best', or 'latest' (also where none had been evaluated for best)

    @property
    def params(self) -> Any:
        """The trained parameters alone."""
        return self.variables["params"]

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.dataset["image_shape"])

    def preprocess(self) -> Preprocess:
        """Evaluation preprocessing with the training set's statistics."""
        return Preprocess(mean=tuple(self.dataset["mean"]), std=tuple(self.dataset["std"]))

    def apply_fn(self, tta: int | None = None) -> Any:
        """The eval model's apply (for_eval) with test-time augmentation of level `tta` (default: the run's --tta)."""
        model = create_model(self.config, len(self.class_names), for_eval=True)
        return with_tta(model.apply, self.config.tta if tta is None else tta)


def load_trained(workdir: str | Path, which: str = "best") -> Trained:
    """The best (by test accuracy) or latest checkpoint of a run's workdir; one that cannot be read or fails its check
    (NaN/inf, checksum) is skipped with a warning for the next. Raises InputError if none is usable."""
    if which not in ("best", "latest"):
        raise InputError(f"which checkpoint: 'best' or 'latest', not {which!r}")
    directory = checkpoint_dir(workdir)
    if Path(workdir).expanduser().is_file():
        raise InputError(f"{workdir} is a file, not a run's folder; pass --workdir the folder a run trained in (it "
                         f"holds config.json and checkpoints/)")
    if not directory.is_dir() and (Path(workdir) / STUDY_SPEC_FILE).exists():
        raise InputError(f"{workdir} holds a seed study, whose runs are its seed folders: pass one of them, "
                         f"--workdir {Path(workdir) / 'seed_<n>'}")
    if not directory.is_dir():
        raise InputError(f"{workdir} holds no checkpoints ({directory} does not exist); train first, e.g. "
                         f"`jaxrec train --workdir {workdir}`, or pass the workdir of a finished run")
    manager = _manager(directory, read_only=True)
    try:
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise InputError(f"{directory} holds no complete checkpoint; train (or resume) the run first")
        candidates = _preferred(manager, steps, which, workdir)
        changed = candidates and recorded_recipe_problem(candidates[0][1].recipe, f"the run in {workdir}")
        if changed:
            raise InputError(changed)
        for step, meta in candidates:
            restored = _restore(manager, step, _template(meta), meta)
            if restored is not None:
                if step != candidates[0][0]:
                    log.warning("using checkpoint step %d of %s instead", step, workdir)
                chosen = "best" if which == "best" and meta.test_accuracy is not None else "latest"
                return Trained(config=as_trained(meta), variables=restored.state.eval_variables, step=step,
                               epoch=meta.run.epoch, dataset=meta.dataset, test_accuracy=meta.test_accuracy,
                               which=chosen)
    finally:
        manager.close()
    raise InputError(f"none of the checkpoints in {directory} (steps {steps}) can be used (see the warnings "
                     f"above); train the run again, e.g. with --resume=false (they are moved aside, not deleted)")


def as_trained(meta: CheckpointMeta) -> Config:
    """A checkpoint's config as evaluation and prediction run it: in the type it trained in, where recorded,
    so `--dtype auto` of a run made on a CPU (float32) does not evaluate in bfloat16 on an accelerator."""
    config = Config.from_dict(meta.config)
    if config.dtype == "auto" and meta.compute_dtype is not None and resolved_dtype(config) != meta.compute_dtype:
        log.info("evaluating in %s, the type the run trained in (--dtype auto gives %s here)", meta.compute_dtype,
                 resolved_dtype(config))
        return config.replace(dtype=meta.compute_dtype)
    return config


def _preferred(manager: ocp.CheckpointManager, steps: list[int], which: str,
               workdir: str | Path) -> list[tuple[int, CheckpointMeta]]:
    """(step, meta) of the readable checkpoints, the one asked for first: by test accuracy for
    'best' (newest first among equals; the latest if none was evaluated), else newest first."""
    metas = [(step, meta) for step in steps if (meta := _read_meta_or_none(manager, step)) is not None]
    if which == "best":
        if metas and all(meta.test_accuracy is None for _, meta in metas):
            log.warning("no checkpoint of %s has been evaluated yet; using the latest instead of the best", workdir)
        metas.sort(key=lambda sm: -1.0 if sm[1].test_accuracy is None else sm[1].test_accuracy, reverse=True)
    return metas


def _template(meta: CheckpointMeta) -> TrainState:
    """The (abstract) train state a checkpoint's arrays restore into."""
    config = Config.from_dict(meta.config)
    model = create_model(config, len(meta.dataset["class_names"]))
    return jax.eval_shape(lambda: create_train_state(config.optimisation, model, tuple(meta.dataset["image_shape"]),
                                                     jax.random.key(0), steps_per_epoch=1))
