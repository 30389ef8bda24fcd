"""Compare two seed studies: is A better than B, and how sure can we be?

    python experiments/compare_studies.py runs/study_augment runs/study_plain
    python experiments/compare_studies.py W_A W_B --metric test_macro_f1 --json

Reads each workdir's study.json (jaxrec study) and prints the difference of means with Welch's 95%
interval and p-value, P(A>B) (a random seed of A beats a random seed of B) with a bootstrap
interval, the seeds per arm a difference of this size needs, and a one-line verdict to paste.
For test_loss, lower is better: the verdict compares B's loss against A's.
"""

import argparse
import json
import sys
from pathlib import Path

from jaxrec.studies import stats

# What makes two studies' numbers measure different things: the data set and the split scored.
DATA_KEYS = ("location", "class_names", "image_shape", "train_examples", "eval_examples")
SPLIT_KEYS = ("train_split", "eval_split", "test_fraction", "image_size", "channels")


def data_differences(a: dict, b: dict) -> list[str]:
    """The data set and split fields in which two study.json files differ ('field (A: x, B: y)');
    studies written before study.json recorded its data set are compared by --dataset alone."""
    data_a, data_b = a.get("dataset") or {"location": a["config"]["dataset"]}, b.get("dataset") or {"location": b["config"]["dataset"]}
    pairs = [(f"dataset {key}" if key != "location" else "dataset", data_a.get(key), data_b.get(key)) for key in DATA_KEYS
             if key in data_a and key in data_b]
    pairs += [(key, a["config"].get(key), b["config"].get(key)) for key in SPLIT_KEYS]
    return [f"{name} (A: {x!r}, B: {y!r})" for name, x, y in pairs if x != y]


def read_study(path: Path, metric: str) -> tuple[dict | None, str | None]:
    """A study.json with `metric`'s values, or the one line that says why it cannot be read."""
    if not path.exists():
        return None, f"{path} does not exist; run the study first (jaxrec study ... --workdir {path.parent})"
    try:
        study = json.loads(path.read_text())
        values, _ = study["metrics"][metric]["values"], study["config"]["dataset"]
    except (ValueError, KeyError, TypeError) as error:
        return None, f"{path} is damaged ({type(error).__name__}: {error}); rerun the study's command to write it again"
    return study, None


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="study A's workdir")
    parser.add_argument("b", type=Path, help="study B's workdir")
    parser.add_argument("--metric", default="test_accuracy", choices=("test_accuracy", "test_macro_f1", "test_loss"))
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args()
    studies = []
    for workdir in (args.a, args.b):
        study, problem = read_study(workdir / "study.json", args.metric)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        studies.append(study)
    values = [study["metrics"][args.metric]["values"] for study in studies]
    a, b = values if args.metric != "test_loss" else [[-v for v in vs] for vs in values]  # higher is better
    warnings = data_differences(*studies)
    result = {"metric": args.metric, "a": str(args.a), "b": str(args.b), "warnings": warnings, **stats.compare(a, b)}
    if warnings:  # first, so that nobody reads the verdict without it
        print(f"warning: A and B were scored on different data: {'; '.join(warnings)}. The comparison below mixes "
              "data sets or splits.", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))  # undefined statistics are null, never NaN
    else:
        print(f"{args.metric}: A = {args.a} (n={result['n_a']}), B = {args.b} (n={result['n_b']})")
        print(result["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
