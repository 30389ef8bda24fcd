"""The accuracy tables of results/airbench94.md, from the run files in results/airbench94/.

The reference's runs are its last JSON line (`peer_<schedule>_seed<n>.json`), jaxrec's their run
folders (`jaxrec_<schedule>_seed<n>/summary.json`); `<schedule>` is `epochs2` or `full`.

    python experiments/airbench_report.py results/airbench94
"""

from __future__ import annotations

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


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "results/airbench94")
    for schedule, title in (("epochs2", "Short schedule: --epochs 2 (96 steps)"), ("full", "Full schedule: 9.9 epochs (476 steps)")):
        print(f"### {title}\n\n{table(runs(folder, schedule))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
