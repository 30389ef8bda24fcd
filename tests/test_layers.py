"""The package's imports point downward: config at the bottom, then the models, the core (state, steps,
optimizer, augmentation, test-time augmentation, metrics, the pmapped program), the runtime, data, run
storage, evaluation, the training loop, studies, and the command line on top. An import from a layer to
one above it fails here, and so does a function with more than six parameters or a line over 120
characters."""

import ast
from pathlib import Path

from helpers import ROOT

# Bottom up; a module belongs to the first layer with a prefix of its name ("jaxrec": the package itself).
LAYERS = (
    ("jaxrec.errors", "jaxrec.config"),
    ("jaxrec.models",),
    ("jaxrec.core",),
    ("jaxrec.runtime",),
    ("jaxrec.data",),
    ("jaxrec.run",),
    ("jaxrec.evaluation",),
    ("jaxrec.training",),
    ("jaxrec.studies",),
    ("jaxrec.benchmark", "jaxrec.cli", "jaxrec.__main__", "jaxrec"),
)


def layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or (p != "jaxrec" and module.startswith(p + ".")) for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def jaxrec_imports(path: Path) -> set[str]:
    """Every jaxrec module `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("jaxrec"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("jaxrec"))
    return found


def upward_imports() -> set[tuple[str, str]]:
    edges = {(module_name(path), imported) for path in (ROOT / "jaxrec").rglob("*.py")
             for imported in jaxrec_imports(path)}
    return {(a, b) for a, b in edges if layer(b) > layer(a)}


def test_no_import_points_to_a_layer_above():
    assert upward_imports() == set()


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = function.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg, args.kwarg))]
    return len([a for a in names if a.arg not in ("self", "cls")])


def test_no_function_takes_more_than_six_parameters():
    """What a function needs comes in a few named values (a trainer, a session, a group), not a dozen loose ones."""
    crowded = [f"{path.relative_to(ROOT)}:{node.name} ({parameter_count(node)})"
               for path in (ROOT / "jaxrec").rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameter_count(node) > 6]
    assert crowded == []


def test_the_core_imports_nothing_of_the_harness():
    """What the program computes reads apart from the harness: the core needs only the config and the models."""
    imported = {name for path in (ROOT / "jaxrec" / "core").rglob("*.py") for name in jaxrec_imports(path)}
    assert {name for name in imported if not name.startswith(("jaxrec.core", "jaxrec.models", "jaxrec.config",
                                                              "jaxrec.errors"))} == set()


def test_no_line_of_the_package_is_longer_than_120_characters():
    """The package's formatting: its size is counted in lines, so none may hold two lines' worth."""
    long = [f"{path.relative_to(ROOT)}:{number}" for path in (ROOT / "jaxrec").rglob("*.py")
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > 120]
    assert long == []


def test_the_core_and_the_data_layer_read_their_own_settings_not_the_whole_config():
    """The optimizer, the step and the augmentation take Config.optimisation; the data readers Config.data_plan."""
    whole = [f"{path.relative_to(ROOT)}:{node.name}" for folder in ("core", "data")
             for path in (ROOT / "jaxrec" / folder).rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(a.annotation is not None and ast.unparse(a.annotation) == "Config"
                     for a in [*node.args.args, *node.args.kwonlyargs])]
    assert whole == []
