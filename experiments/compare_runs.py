"""Compare two runs epoch by epoch: are their metrics bit-identical (timings aside)?

    python experiments/compare_runs.py runs/straight runs/interrupted

Used to check that a run stopped and resumed from its checkpoint computes exactly what an
uninterrupted run computes. Prints a Markdown table; exits 1 if any epoch differs.
"""

import argparse
import sys
from pathlib import Path

from jaxrec.run.outputs import read_jsonl
from jaxrec.run.workdir import workdir_kind
from jaxrec.core.run_state import TIMING_FIELDS as TIMING


def problem(workdir: Path) -> str | None:
    """Why `workdir` is not a run's folder with epochs to compare, or None."""
    if not workdir.is_dir():
        return f"{workdir} {'is a file' if workdir.exists() else 'does not exist'}; pass the workdir of a run"
    if workdir_kind(workdir) == "study":
        return f"{workdir} is a seed study, not a run; pass two of its runs ({workdir}/seed_<n>)"
    if not (workdir / "metrics.jsonl").exists():  # a line per epoch trained: none before the first ends
        return f"{workdir} holds no finished epoch (no metrics.jsonl); pass the workdir of a run that trained one"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    refused = problem(args.first) or problem(args.second)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    runs = [read_jsonl(workdir / "metrics.jsonl") for workdir in (args.first, args.second)]
    print(f"| epoch | train loss ({args.first.name}) | test accuracy | train loss ({args.second.name}) | "
          f"test accuracy | every non-timing field identical |")
    print("|---|---|---|---|---|---|")
    all_same = len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        same = {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
        all_same &= same
        print(f"| {a['epoch']} | {a['train_loss']!r} | {a.get('test_accuracy', '-')} | {b['train_loss']!r} | "
              f"{b.get('test_accuracy', '-')} | {'yes' if same else '**no**'} |")
    print(f"\n{len(runs[0])} vs {len(runs[1])} epochs; {'bit-identical' if all_same else 'DIFFERENT'}")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
