"""The accuracy tables of results/airbench94.md, from the run files in results/airbench94/.

The reference's runs are its last JSON line (`peer_<schedule>_seed<n>.json`), jaxrec's their run
folders (`jaxrec_<schedule>_seed<n>/summary.json`); `<schedule>` is `epochs2` or `full`.

    python experiments/airbench_report.py results/airbench94
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def runs(folder: Path, schedule: str) -> dict[str, list[dict]]:
    """{'reference': [...], 'jaxrec': [...]}: each run's seed, accuracy with and without TTA, steps, seconds."""
    found = {"reference": [], "jaxrec": []}
    for path in sorted(folder.glob(f"peer_{schedule}_seed*.json")):
        text = path.read_text().strip()
        if not text.startswith("{"):
            continue  # a run that did not finish
        run = json.loads(text)
        found["reference"].append({"seed": run["seed"], "tta": run["tta_test_accuracy"], "plain": run["test_accuracy"],
                                   "steps": run["steps"], "train_seconds": run["train_seconds"]})
    for path in sorted(folder.glob(f"jaxrec_{schedule}_seed*/summary.json")):
        run = json.loads(path.read_text())
        train_seconds = sum(r["train_seconds"] for r in map(json.loads, (path.parent / "metrics.jsonl").open()))
        found["jaxrec"].append({"seed": run["seed"], "tta": run["test_accuracy"],
                                "plain": run["test_accuracy_without_tta"], "steps": run["steps"],
                                "train_seconds": train_seconds, "wall_seconds": run["wall_seconds"]})
    return found


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{100 * mean:.2f}%" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")


def each(rows: list[dict], key: str, form: str) -> str:
    return ", ".join(form.format(r[key]) for r in rows)


def table(found: dict[str, list[dict]]) -> str:
    lines = ["| program | seeds | TTA accuracy, each | mean ± std | without TTA, mean | steps | training seconds, each |",
             "|---|---|---|---|---|---:|---|"]
    for name, rows in found.items():
        if not rows:
            continue
        lines.append(f"| {name} | {', '.join(str(r['seed']) for r in rows)} | "
                     f"{each(rows, 'tta', '{:.2%}')} | {spread([r['tta'] for r in rows])} | "
                     f"{spread([r['plain'] for r in rows])} | {rows[0]['steps']} | {each(rows, 'train_seconds', '{:.0f}')} |")
    return "\n".join(lines)


def step_count(found: dict[str, list[dict]]) -> str:
    """' (N steps)' as the runs trained, for a title; ' (steps differ: ...)' if they did not all train as many."""
    steps = sorted({r["steps"] for rows in found.values() for r in rows})
    if len(steps) > 1:
        return f" (steps differ: {', '.join(map(str, steps))})"
    return f" ({steps[0]} steps)" if steps else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("folder", nargs="?", type=Path, default=Path("results/airbench94"),
                        help="the folder of run files (default %(default)s)")
    folder = parser.parse_args(argv).folder
    found = {schedule: runs(folder, schedule) for schedule in ("epochs2", "full")} if folder.is_dir() else {}
    if not any(rows for schedule in found.values() for rows in schedule.values()):
        problem = ("holds no finished run (peer_<schedule>_seed<n>.json, jaxrec_<schedule>_seed<n>/summary.json)"
                   if folder.is_dir() else "is a file" if folder.exists() else "does not exist")
        print(f"error: {folder} {problem}; pass the folder of the airbench94 runs (results/airbench94)",
              file=sys.stderr)
        return 2
    for schedule, title in (("epochs2", "Short schedule: --epochs 2"), ("full", "Full schedule: 9.9 epochs")):
        print(f"### {title}{step_count(found[schedule])}\n\n{table(found[schedule])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
