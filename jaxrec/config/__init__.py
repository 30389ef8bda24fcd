"""Settings: `Config` (every knob of a run), `BenchmarkOptions`, and the checks that refuse a bad value in one line
(docs/design.md, "A config with a shape"). Imports nothing heavy: the command line checks a config before JAX starts."""

from jaxrec.config.rules import (ROLES, Rule, above, at_least, choices, field_problems, fields_with, in_range, knob,
                                 sizes_at_least)
from jaxrec.config.settings import (BENCHMARK_UNUSED, EVALUATION_FIELDS, EXECUTION_FIELDS, MAY_CHANGE_IN_STUDY,
                                    MAY_CHANGE_ON_RESUME, MEMBER_FIELDS, MODEL_AXES, MODELS, PER_PROCESS_FIELDS,
                                    SEED_LIMIT, SOURCES, BenchmarkOptions, Config, DataPlan, Optimisation, check,
                                    combination_problems, is_folder_path, is_recipe_file, refuse, settings_problems)

__all__ = ["BENCHMARK_UNUSED", "BenchmarkOptions", "Config", "DataPlan", "EVALUATION_FIELDS", "EXECUTION_FIELDS",
           "MAY_CHANGE_IN_STUDY", "MAY_CHANGE_ON_RESUME", "MEMBER_FIELDS", "MODEL_AXES", "MODELS", "Optimisation",
           "PER_PROCESS_FIELDS", "ROLES", "Rule", "SEED_LIMIT", "SOURCES", "above", "at_least", "check", "choices",
           "combination_problems", "field_problems", "fields_with", "in_range", "is_folder_path", "is_recipe_file",
           "knob", "refuse", "settings_problems", "sizes_at_least"]
