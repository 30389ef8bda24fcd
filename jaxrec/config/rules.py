"""Rules for settings: what values a field allows, the `knob` that declares a field with its help
text, and the per-field checks (type, choices, rule) of any settings dataclass. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
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
    """0 up to the cores available: a process more than there are cores only competes for them, and
    costs its own memory."""
    cores = cores_available()
    return Rule(lambda v: is_number(v) and 0 <= v <= cores,
                f"in [0, {cores}] (the CPU cores this process may use; more workers only compete for them)")


def sizes_at_least(low: int) -> Rule:
    return Rule(lambda v: len(v) > 0 and all(is_number(x) and x >= low for x in v),
                f"a non-empty comma-separated list of integers >= {low}")


def knob(default: Any, help: str, rule: Rule | None = None) -> Any:
    """A config field: its default, its help text and (optionally) the values it allows."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule})


def choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The values of an enumerated (Literal) field, or None for any other field."""
    hint = typing.get_type_hints(cls)[name]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


# Fields that only the RNN reads: their values are checked only when model=rnn.
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
    """One line per field of a dataclass (or per field named in `only`) whose value has the wrong
    type, is not among its choices, or breaks its rule."""
    problems = []
    hints = typing.get_type_hints(type(settings))
    for field in dataclasses.fields(settings):
        if only is not None and field.name not in only:
            continue
        value = getattr(settings, field.name)
        allowed = choices(type(settings), field.name)
        rule = field.metadata.get("rule")
        if not _has_type(hints[field.name], value):
            problems.append(_refusal(field.name, value, f"of type {_type_name(hints[field.name])}"))
        elif allowed is not None and value not in allowed:
            problems.append(_refusal(field.name, value, "one of " + ", ".join(map(str, allowed))))
        elif rule is not None and not rule(value):
            problems.append(_refusal(field.name, value, rule.wording))
    return problems


def _type_name(hint: Any) -> str:
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(hint, str(hint).replace("typing.", ""))


def _refusal(name: str, value: Any, allowed: str) -> str:
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return f"--{name} {text or repr(text)}: must be {allowed}"


__all__ = ["Rule", "above", "at_least", "cores_at_most", "cores_available", "choices", "field_problems", "in_range", "is_number", "knob",
           "sizes_at_least", "zero_or_at_least"]
