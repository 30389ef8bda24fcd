"""Two seed studies side by side: is A better than B on a metric, and how sure can we be (stats.compare)?
The data each was scored on is compared first: studies of other data sets or splits measure other things."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxrec.errors import InputError
from jaxrec.run.workdir import workdir_kind

METRICS = ("test_accuracy", "test_macro_f1", "test_loss")  # test_loss: lower is better
# What makes two studies' numbers measure different things: the data set and the split scored.
DATA_KEYS = ("location", "class_names", "image_shape", "train_examples", "eval_examples")
SPLIT_KEYS = ("train_split", "eval_split", "test_fraction", "image_size", "channels")


def data_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The data set and split fields in which two study.json files differ ('field (A: x, B: y)'); studies written
    before study.json recorded its data set are compared by --dataset alone."""
    data_a = a.get("dataset") or {"location": a["config"]["dataset"]}
    data_b = b.get("dataset") or {"location": b["config"]["dataset"]}
    pairs = [(f"dataset {key}" if key != "location" else "dataset", data_a.get(key), data_b.get(key))
             for key in DATA_KEYS if key in data_a and key in data_b]
    pairs += [(key, a["config"].get(key), b["config"].get(key)) for key in SPLIT_KEYS]
    return [f"{name} (A: {x!r}, B: {y!r})" for name, x, y in pairs if x != y]


def read_study(workdir: Path, metric: str) -> tuple[dict[str, Any], list[float]]:
    """The study.json in `workdir` and its seeds' values of `metric`; one missing or damaged raises InputError."""
    path = Path(workdir) / "study.json"
    if not path.exists() and Path(workdir).is_dir() and workdir_kind(Path(workdir)) == "run":
        raise InputError(f"{workdir} holds a training run, not a seed study; pass the workdir of a seed study (the "
                         f"folder where jaxrec study wrote study.json)")
    if not path.exists():
        raise InputError(f"{path} does not exist; run the study first (jaxrec study ... --workdir {workdir})")
    try:
        study = json.loads(path.read_text())
        values = [float(value) for value in study["metrics"][metric]["values"]]
        if "dataset" not in study["config"]:
            raise KeyError("config.dataset")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} is damaged ({type(error).__name__}: {error}); rerun the study's command to write "
                         f"it again") from None
    return study, values


def compare_studies(a: Path, b: Path, metric: str = "test_accuracy") -> dict[str, Any]:
    """Study A (a workdir) against study B on `metric`: stats.compare's figures and verdict, with `warnings` naming
    what differs in the data they were scored on."""
    from jaxrec.studies import stats  # noqa: PLC0415 - SciPy takes a second to import; the command line imports this

    (study_a, values_a), (study_b, values_b) = (read_study(workdir, metric) for workdir in (a, b))
    return {"metric": metric, "a": str(a), "b": str(b), "warnings": data_differences(study_a, study_b),
            **stats.compare(values_a, values_b, higher_is_better=metric != "test_loss")}
