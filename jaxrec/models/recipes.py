"""Recipes: what `--model` names, a built-in module or a file of your own. The form a recipe takes, and what a run
records of a file and refuses: docs/recipes.md. Loading a recipe imports its module (and JAX), not JAX's backend."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from jaxrec.config import MODELS, Config, field_problems, is_recipe_file
from jaxrec.errors import InputError


# What a recipe may declare of its network, with the defaults of one that declares nothing: it honours --dtype,
# ignores --norm, and may have BatchNorm (a file's network is looked at once built: check_images).
FACTS = {"FLOAT32": False, "READS_NORM": False, "BATCH_NORM": True}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A loaded recipe: its module, and for a file its path and the sha256 of its text."""

    module: ModuleType
    path: str | None = None
    sha256: str | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(getattr(self.module, "DEFAULTS", {}))

    @property
    def knobs(self) -> type | None:
        """The recipe's own settings (its `Knobs` dataclass), or None."""
        return getattr(self.module, "Knobs", None)

    @property
    def knob_names(self) -> set[str]:
        """The names of the recipe's own settings (empty without Knobs)."""
        return {field.name for field in dataclasses.fields(self.knobs)} if self.knobs else set()

    @property
    def facts(self) -> dict[str, bool]:
        """What it declares of its network (FACTS), each at its default where it declares nothing."""
        return {name: getattr(self.module, name, default) for name, default in FACTS.items()}

    def record(self) -> dict[str, str] | None:
        """What a run writes down about a recipe file (None for a built-in)."""
        return None if self.path is None else {"path": self.path, "sha256": self.sha256}


def load(model: str) -> Recipe:
    """The recipe `model` names, a built-in or a .py file; one that cannot be used raises InputError (one line)."""
    if not is_recipe_file(model):
        if model not in MODELS:
            raise InputError(f"--model {model}: no built-in recipe of that name ({', '.join(MODELS)}); a recipe "
                             f"of your own is a path ending in .py")
        return Recipe(importlib.import_module(MODELS[model]))
    path = Path(model).absolute()
    try:
        sha256 = fingerprint(path)
    except OSError as err:
        raise InputError(f"--model {model}: cannot read the recipe file ({err.strerror or err}); pass the path of "
                         f"a .py file") from None
    return _load_file(str(path), sha256)


def fingerprint(path: Path) -> str:
    """The sha256 of a recipe file's text: what a run records, and what resume and evaluation compare."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _load_file(path: str, sha256: str) -> Recipe:
    """Executes a recipe file once per content, as a module of its own (its classes then pickle by name)."""
    name = f"jaxrec_recipe_{Path(path).stem}_{sha256[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[name]
        raise InputError(f"{path}, line {err.lineno}: {err.msg}; fix the recipe's syntax") from None
    except Exception as err:  # noqa: BLE001 - whatever a user's module raises on import is reported in one line
        del sys.modules[name]
        raise InputError(f"{where(err, path)}: importing the recipe raised {type(err).__name__}: {err}") from None
    recipe = Recipe(module, path, sha256)
    problem = recipe_problem(recipe)
    if problem:
        del sys.modules[name]
        raise InputError(f"{path}: {problem}")
    return recipe


def recipe_problem(recipe: Recipe) -> str | None:
    """What makes a loaded recipe unusable (no builder, DEFAULTS that are not settings), or None."""
    if not callable(getattr(recipe.module, "build", None)):
        return ("no build() function; a recipe defines build(config, num_classes, kernels) returning a Flax module "
                "(docs/recipes.md)")
    defaults = getattr(recipe.module, "DEFAULTS", {})
    if not isinstance(defaults, dict):
        return f"DEFAULTS is a {type(defaults).__name__}; it must be a dict of settings, e.g. dict(epochs=20)"
    known = {field.name for field in dataclasses.fields(Config)}
    unknown = sorted(set(defaults) - known)
    if unknown:
        return (f"DEFAULTS sets {', '.join(map(repr, unknown))}, which jaxrec has no setting for (jaxrec train --help "
                f"lists them)")
    wrong = field_problems(Config(**defaults), list(defaults))  # named here, not as a flag nobody typed
    if wrong:
        return f"DEFAULTS: {wrong[0]}"
    not_bool = [name for name, value in recipe.facts.items() if not isinstance(value, bool)]
    if not_bool:
        return f"{not_bool[0]} is {recipe.facts[not_bool[0]]!r}; it must be True or False"
    if recipe.knobs is None:
        return None
    if not dataclasses.is_dataclass(recipe.knobs):
        return "Knobs must be a dataclass whose fields are jaxrec.config.knob(default, help, rule)"
    taken = sorted(known & recipe.knob_names)
    if taken:
        return f"Knobs names {', '.join(map(repr, taken))}, which jaxrec's own settings use; rename them"
    bare = [field.name for field in dataclasses.fields(recipe.knobs) if "help" not in field.metadata]
    if bare:
        return f"Knobs.{bare[0]} has no help; declare each knob as jaxrec.config.knob(default, help, rule)"
    missing = [field.name for field in dataclasses.fields(recipe.knobs)
               if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        return f"Knobs.{missing[0]} has no default; declare each knob as jaxrec.config.knob(default, help, rule)"
    wrong = field_problems(recipe.knobs())
    return f"Knobs' default {wrong[0]}" if wrong else None


def recipe_knobs(config: Config) -> Any:
    """The recipe's own settings for `config`: its Knobs with config.knobs set (the rest at their defaults)."""
    knobs = load(config.model).knobs
    return None if knobs is None else knobs(**dict(config.knobs))


def where(err: BaseException, path: str) -> str:
    """`path, line N` for the innermost line of the recipe file in err's traceback (`path` if none)."""
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == path]
    return f"{path}, line {lines[-1]}" if lines else path


def recorded_recipe_problem(recorded: dict[str, str] | None, what: str) -> str | None:
    """Why the recipe file a run `recorded` (Recipe.record) cannot rebuild `what` (e.g. "the checkpoint at
    step 40 in runs/x"): moved or deleted, or its text changed since. None: a built-in, or the same text."""
    if recorded is None:
        return None
    path = Path(recorded["path"])
    try:
        now = fingerprint(path)
    except OSError:
        return (f"{what} was trained by the recipe file {path}, which is not there any more (moved or deleted); put "
                f"it back at that path")
    if now != recorded["sha256"]:
        return (f"the recipe file {path} changed since it trained {what} (sha256 {recorded['sha256'][:12]} then, "
                f"{now[:12]} now); restore its text (git checkout, a copy), or save the new recipe under another name")
    return None


# The shared settings a recipe may have no use for; each one's default leaves it out.
MAY_BE_UNUSED = ("dtype", "norm", "norm_bias_lr_scale")


def unused(config: Config) -> list[str]:
    """The settings of MAY_BE_UNUSED that config's network has no use for, as its recipe declares (FACTS)."""
    facts = load(config.model).facts
    batch_norm = config.norm != "none" if facts["READS_NORM"] else facts["BATCH_NORM"]
    off = {"dtype": facts["FLOAT32"], "norm": not facts["READS_NORM"], "norm_bias_lr_scale": not batch_norm}
    return [name for name in MAY_BE_UNUSED if off[name]]


def without_unused_defaults(config: Config, given: Sequence[str]) -> Config:
    """`config` with the settings its network has no use for, but those in `given` (what the user set), back at
    their defaults: a recipe's defaults do not apply to another model; only what the user set is refused. The
    recipe is loaded only when one of them is away from its default (a plain command imports no network)."""
    plain = Config()
    if all(getattr(config, name) == getattr(plain, name) for name in MAY_BE_UNUSED if name not in given):
        return config
    return config.replace(**{name: getattr(plain, name) for name in unused(config) if name not in given})


def unused_problems(config: Config) -> list[str]:
    """The settings config sets that its network has no use for (unused), each in one line."""
    model, off = config.model, unused(config)
    problems = []
    if "dtype" in off and config.dtype == "bfloat16":
        problems.append(f"--dtype bfloat16 with --model {model}: the {model} computes in float32; drop --dtype "
                        f"(bfloat16 is for airbench94, the ResNets, and recipes that read it)")
    if "norm_bias_lr_scale" in off and config.norm_bias_lr_scale != 1:
        reads_norm = "norm" not in off
        problems.append(f"--norm_bias_lr_scale with --model {model}{' --norm none' if reads_norm else ''}: the "
                        f"model has no BatchNorm; drop it")
    if "norm" in off and config.norm != "none":
        problems.append(f"--norm {config.norm} with --model {model}: only the cnn has normalisation layers; drop "
                        f"--norm")
    return problems


def config_for(model: str, **changes: Any) -> Config:
    """The config of `model` with its recipe's DEFAULTS and knobs, then `changes`: what `--model` does. A recipe
    file's path is recorded absolute."""
    recipe = load(model)
    knobs = dataclasses.asdict(recipe.knobs()) if recipe.knobs else {}
    knobs.update({name: value for name, value in changes.items() if name in recipe.knob_names})
    settings = {name: value for name, value in changes.items() if name not in recipe.knob_names}
    return Config(**{**recipe.defaults, "model": recipe.path or model, **settings}, knobs=tuple(knobs.items()))


def image_size_problem(config: Config, height: int, width: int, where: str) -> str | None:
    """The line that refuses `height` x `width` images (`where`: the flag or data set they come from) for
    config's recipe, from its own `image_size_problem` if it has one (airbench94's pools need 25 pixels)."""
    own = getattr(load(config.model).module, "image_size_problem", None)
    return own(config, height, width, where) if own else None


def check_images(config: Config, image_shape: Sequence[int], num_classes: int, source: str) -> None:
    """Raises InputError (one line) when config's recipe cannot take images of `image_shape` (H, W, C) from
    `source`: too small for it, or a recipe file's network fails on one or gives logits of another shape than
    [batch, num_classes] (a built-in is trusted)."""
    problem = image_size_problem(config, image_shape[0], image_shape[1], source)
    if problem:
        raise InputError(problem)
    recipe = load(config.model)
    if recipe.path is None:
        return
    import jax  # noqa: PLC0415 - only once the backend may start
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxrec.models import create_model  # noqa: PLC0415 - the package's __init__ imports this module
    from jaxrec.models.norm import is_norm_bias, path_names  # noqa: PLC0415

    try:
        model = create_model(config, num_classes)
        images = jnp.zeros((2, *image_shape), jnp.float32)
        variables = jax.eval_shape(model.init, jax.random.key(0), images)
        logits = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's network failing is reported in one line
        raise InputError(f"{where(err, recipe.path)}: the network failed on {'x'.join(map(str, image_shape))} "
                         f"images: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if tuple(logits.shape) != (2, num_classes):
        raise InputError(f"{recipe.path}: the network gives logits of shape {list(logits.shape)} for 2 images of "
                         f"{num_classes} classes; it must give [batch, num_classes], here [2, {num_classes}]")
    params = jax.tree_util.tree_leaves_with_path(variables.get("params", {}))
    if config.norm_bias_lr_scale != 1 and not any(is_norm_bias(path_names(path)) for path, _ in params):
        raise InputError(f"--norm_bias_lr_scale {config.norm_bias_lr_scale} with --model {recipe.path}: its network "
                         f"has no BatchNorm bias to scale (a module named BatchNorm_N or normN); drop the flag, or "
                         f"name the recipe's BatchNorm layers so")


def recipe_problems(config: Config) -> list[str]:
    """The refusals of config's recipe: a file that cannot be used, knobs the recipe does not have or values its
    rules do not allow, shared settings its network has no use for, an --image_size it does not take."""
    try:
        names = load(config.model).knob_names
    except InputError as err:
        return [str(err)]
    unknown = sorted(set(dict(config.knobs)) - names)
    if unknown:
        have = f"its knobs are {', '.join(sorted(names))}" if names else "it has no knobs of its own"
        return [f"--model {Path(config.model).name} has no knob {', '.join(unknown)}; {have}"]
    problems = (field_problems(recipe_knobs(config)) if names else []) + unused_problems(config)
    if problems:
        return problems
    too_small = config.image_size and image_size_problem(config, config.image_size, config.image_size,
                                                         f"--image_size {config.image_size}")
    return [too_small] if too_small else []
