"""One `--name` flag per field of a settings dataclass (`Config`, `BenchmarkOptions`, a recipe's `Knobs`): its help
text, a converter for its type, `choices` for a `Literal` type and, for booleans, a bare `--flag` meaning true;
`--help` lists them by the field's group. A parse error is one line, not a usage dump."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn, Sequence

from jaxrec.config import MODELS, Config, choices, is_recipe_file
from jaxrec.config.rules import field_types, values_of
from jaxrec.errors import InputError
from jaxrec.models.recipes import load, without_unused_defaults


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps a docstring's layout."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that points to --help."""

    commands: dict[str, argparse.ArgumentParser] | None = None  # a command line's parser by command (build_parser)

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # --learn must not silently mean --learning_rate
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}{_knob_owners(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _knob_owners(message: str) -> str:
    """For unrecognized flags that are a built-in recipe's own knobs, which --model has each."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    given = {word[2:] for word in message.split() if word.startswith("--")}
    owners = {name: model for model in MODELS for name in load(model).knob_names if name in given}
    return "".join(f"; --{name} is a setting of --model {model}" for name, model in sorted(owners.items()))


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_int_tuple(text: str) -> tuple[int, ...]:
    try:  # an empty item (32,,64) is a typo, not a width to skip
        return tuple(int(part) for part in text.split(",")) if text.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}")


def parse_number(text: str) -> int | float:
    """An int if the text is one (`--epochs 10` stays 10), else a float (`--epochs 9.9`)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


parse_number.__name__ = "number"  # argparse's wording: "invalid number value: 'ten'"


def converter(annotation: Any) -> Callable[[str], Any]:
    """An argparse converter for a field's type annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is tuple:
        return parse_int_tuple
    if origin is Literal:
        return type(args[0])
    if set(args) == {int, float}:  # int | float
        return parse_number
    if args:  # Optional[X] / X | None
        return converter(args[0])
    return {bool: parse_bool, int: int, float: float, str: str}[annotation]


def checked(convert: Any, rule: Any) -> Any:
    """`convert` that also refuses the values `rule` does not allow, so the error names the flag as typed
    (e.g. `--batch_size`, an alias of evaluate's `--eval_batch_size`)."""
    def check(text: str) -> Any:
        value = convert(text)
        if not rule(value):
            raise argparse.ArgumentTypeError(f"must be {rule.describe(value)}, got {text!r}")
        return value

    check.__name__ = getattr(convert, "__name__", "value")  # argparse's "invalid int value" wording
    return check


def add_flags(parser: argparse.ArgumentParser, cls: type, defaults: Any = None, *,
              only: Sequence[str] | None = None, inherit: bool = False,
              aliases: dict[str, str] | None = None) -> None:
    """Adds one flag per field of the dataclass `cls` (or per field named in `only`), its default from `defaults`
    (default: cls()). `inherit`: no defaults, a flag not given stays out of the namespace (for defaults from
    elsewhere, e.g. a saved run's config). `aliases`: e.g. {"data": "dataset"} makes `--data` mean `--dataset`."""
    defaults = defaults if defaults is not None else cls()
    hints = field_types(cls)
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if (only is not None and field.name not in only) or "no_flag" in field.metadata.get("roles", ()):
            continue
        names = [f"--{field.name}", *(f"--{alias}" for alias, name in (aliases or {}).items() if name == field.name)]
        base = converter(hints[field.name])
        convert = checked(base, field.metadata["rule"]) if field.metadata.get("rule") is not None else base
        help_text = field.metadata["help"].replace("%", "%%")
        kwargs: dict[str, Any] = dict(type=convert, metavar=field.name.upper(), dest=field.name,
                                      choices=choices(cls, field.name))
        if kwargs["choices"] is not None:
            kwargs["metavar"] = "{" + ",".join(map(str, kwargs["choices"])) + "}"
        if base is parse_bool:
            kwargs.update(nargs="?", const=True, metavar="BOOL")
        if inherit:
            kwargs.update(default=argparse.SUPPRESS, help=help_text + " (default: the run's own)")
        else:
            kwargs.update(default=getattr(defaults, field.name), help=help_text)
        group = field.metadata.get("group")
        if group and group not in groups:  # --help lists the flags by the config's groups
            groups[group] = parser.add_argument_group(f"{group} settings")
        (groups[group] if group else parser).add_argument(*names, **kwargs)


def parse_config(argv: Sequence[str] | None = None, description: str | None = None,
                 defaults: Config | None = None, aliases: dict[str, str] | None = None) -> Config:
    """Command-line flags -> Config, not yet checked (jaxrec.config.check). Defaults the chosen model has no use
    for are left out (without_unused_defaults); the flags given are kept, for the check to refuse."""
    parser = Parser(description=description)
    add_flags(parser, Config, defaults, aliases=aliases)
    model = model_in(argv) or (defaults or Config()).model
    try:
        knobs = own_knobs(model)
    except InputError as err:
        parser.error(str(err))
    if knobs is not None:
        add_knob_flags(parser, model, knobs)
    namespace = parser.parse_args(argv)
    given = Parser(add_help=False)
    add_flags(given, Config, inherit=True, aliases=aliases)
    return without_unused_defaults(config_of(namespace), list(vars(given.parse_known_args(argv)[0])))


def config_of(args: argparse.Namespace, base: Config = Config()) -> Config:
    """`base` with what the parsed flags give, the recipe file's knobs among them."""
    knobs = own_knobs(args.model)
    own = values_of(args, knobs) if knobs is not None else {}
    return base.replace(**values_of(args, Config), knobs=tuple(own.items()))


def model_in(argv: Sequence[str] | None) -> str | None:
    """The value of --model in `argv` (default: this process's arguments), None if not given."""
    scan = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    scan.add_argument("--model")
    return scan.parse_known_args(list(sys.argv[1:] if argv is None else argv))[0].model


def add_knob_flags(parser: argparse.ArgumentParser, model: str, knobs: type, defaults: Any = None) -> None:
    """The flags of a recipe's own `knobs`, in a --help group of their own."""
    group = parser.add_argument_group(f"--model {Path(model).name}'s own settings")
    add_flags(group, knobs, defaults)


def own_knobs(model: str) -> type | None:
    """The Knobs dataclass of the recipe `model` names, or None (none, or no such recipe: the parser refuses it).
    The default model has no knobs (a test pins it), so a command that names no model imports no network."""
    if model == Config().model or not (model in MODELS or is_recipe_file(model)):
        return None
    return load(model).knobs
