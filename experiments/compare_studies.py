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
def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="study A's workdir")
    parser.add_argument("b", type=Path, help="study B's workdir")
    parser.add_argument("--metric", default="test_accuracy", choices=("test_accuracy", "test_macro_f1", "test_loss"))
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args()
    values = []
    for workdir in (args.a, args.b):
        path = workdir / "study.json"
        if not path.exists():
            print(f"error: {path} does not exist; run the study first (jaxrec study ... --workdir {workdir})",
                  file=sys.stderr)
            return 2
        values.append(json.loads(path.read_text())["metrics"][args.metric]["values"])
    a, b = values if args.metric != "test_loss" else [[-v for v in vs] for vs in values]  # higher is better
    result = {"metric": args.metric, "a": str(args.a), "b": str(args.b), **stats.compare(a, b)}
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))  # undefined statistics are null, never NaN
    else:
        print(f"{args.metric}: A = {args.a} (n={result['n_a']}), B = {args.b} (n={result['n_b']})")
        print(result["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
