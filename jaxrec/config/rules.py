"""Rules for settings: what values a field allows, the `knob` that declares a field with its help
text, and the per-field checks (type, choices, rule) of any settings dataclass. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from typing import Any, Callable, Literal, Sequence


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a field allows: a test and the words that describe it to a user."""

    allows: Callable[[Any], bool]
    wording: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.allows(value))
        except (TypeError, AttributeError):  # e.g. None where a number or a string belongs
            return False

    def describe(self, value: Any) -> str:
        """What a refused `value` must be: the wording, led by "a finite number" for inf or nan (inf is > 0)."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"a finite number {self.wording}"
        return self.wording


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float) -> Rule:
    return Rule(lambda v: is_number(v) and v >= low, f">= {low}")


def above(low: float) -> Rule:
    return Rule(lambda v: is_number(v) and v > low, f"> {low}")


def in_range(low: float, high: float, *, low_open: bool = False) -> Rule:
    """low <= value < high (low < value < high with low_open)."""
    left = "(" if low_open else "["
    return Rule(lambda v: is_number(v) and (v > low if low_open else v >= low) and v < high,
                f"in {left}{low}, {high})")


def zero_or_at_least(low: int) -> Rule:
    return Rule(lambda v: is_number(v) and (v == 0 or v >= low), f"0 or >= {low}")


def cores_available() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cores_at_most() -> Rule:
    """0 up to the cores available: processes beyond the cores only compete for them, and cost memory."""
    cores = cores_available()
    return Rule(lambda v: is_number(v) and 0 <= v <= cores,
                f"in [0, {cores}] (the CPU cores this process may use; more workers only compete for them)")


def sizes_at_least(low: int) -> Rule:
    return Rule(lambda v: len(v) > 0 and all(is_number(x) and x >= low for x in v),
                f"a non-empty comma-separated list of integers >= {low}")


# The roles a field may have (knob's `roles`), each read by one part of the package through fields_with.
ROLES = {
    "execution": "how the run computes, not what (beyond float rounding)",
    "resume": "may differ when a run resumes from its checkpoint",
    "study": "may differ when a seed study continues",
    "evaluation": "jaxrec evaluate may set it anew for a trained run",
    "per_process": "may differ between the processes of one run",
    "per_member": "differs between the models of one program (a study's seeds)",
    "untimed": "has no part in what the benchmark times (it offers no flag for it)",
    "no_flag": "has no flag of its own (the recipe's knobs: each is one)",
}


def knob(default: Any, help: str, rule: Rule | None = None, *, group: str = "", roles: Sequence[str] = ()) -> Any:
    """A settings field: its default, help text, (optionally) the values it allows, its flag's group and ROLES."""
    unknown = set(roles) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule, "group": group,
                                                        "roles": frozenset(roles)})


def knob_group(group: str, *roles: str) -> Callable[..., Any]:
    """`knob` for the fields of `group`, each with `roles` and those it adds (`also`)."""
    def declare(default: Any, help: str, rule: Rule | None = None, *, also: Sequence[str] = ()) -> Any:
        return knob(default, help, rule, group=group, roles=(*roles, *also))

    return declare


def fields_with(cls: type, role: str) -> tuple[str, ...]:
    """The names of the fields of the settings dataclass `cls` that have `role` (ROLES)."""
    assert role in ROLES, role
    return tuple(f.name for f in dataclasses.fields(cls) if role in f.metadata.get("roles", ()))


def values_of(settings: Any, cls: type) -> dict[str, Any]:
    """The attributes of `settings` (parsed flags, a Config) that are fields of the dataclass `cls`, by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(settings).items() if k in names}


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The type hints of a settings dataclass, resolved once per class (the parser asks per flag)."""
    return typing.get_type_hints(cls)


def choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The values of an enumerated (Literal) field, or None for any other field."""
    hint = field_types(cls)[name]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _has_type(hint: Any, value: Any) -> bool:
    """Whether `value` is of the field type `hint` (an int field takes no float or bool)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return True  # the choices check covers it
    if origin is tuple:
        return isinstance(value, tuple) and all(_has_type(args[0], v) for v in value)
    if args:  # X | None
        return value is None or any(_has_type(a, value) for a in args if a is not type(None))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def field_problems(settings: Any, only: Sequence[str] | None = None) -> list[str]:
    """One line per field (of those in `only`) whose value has the wrong type, is no choice, or breaks its rule."""
    problems = []
    hints = field_types(type(settings))
    for field in dataclasses.fields(settings):
        if only is not None and field.name not in only:
            continue
        value = getattr(settings, field.name)
        allowed = choices(type(settings), field.name)
        rule = field.metadata.get("rule")
        hint = hints[field.name]
        if not _has_type(hint, value):
            name = {int: "int", float: "float", bool: "bool", str: "str"}.get(hint, str(hint).replace("typing.", ""))
            problems.append(_refusal(field.name, value, f"of type {name}"))
        elif allowed is not None and value not in allowed:
            problems.append(_refusal(field.name, value, "one of " + ", ".join(map(str, allowed))))
        elif rule is not None and not rule(value):
            problems.append(_refusal(field.name, value, rule.describe(value)))
    return problems


def _refusal(name: str, value: Any, allowed: str) -> str:
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return f"--{name} {text or repr(text)}: must be {allowed}"
