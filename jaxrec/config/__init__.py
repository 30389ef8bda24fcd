"""Settings: every knob of a run in one frozen dataclass, `Config`, with the benchmark's own
`BenchmarkOptions` and the checks that refuse a bad value in one line (settings), built from field
rules any settings dataclass can use (rules). Imports nothing heavy: the command line checks a
config before JAX starts."""

from jaxrec.config.rules import Rule, choices, field_problems, knob
from jaxrec.config.settings import (EVALUATION_FIELDS, EXECUTION_FIELDS, MODEL_AXES, MODELS, RNN_FIELDS, SEED_LIMIT,
                                    SOURCES, BenchmarkOptions, Config, check, combination_problems, config_problems,
                                    is_recipe_file, without_unused_defaults)

__all__ = ["BenchmarkOptions", "Config", "EVALUATION_FIELDS", "EXECUTION_FIELDS", "MODEL_AXES", "MODELS", "RNN_FIELDS",
           "Rule", "SEED_LIMIT", "SOURCES", "check", "choices", "combination_problems", "config_problems",
           "field_problems", "is_recipe_file", "knob", "without_unused_defaults"]
