"""Which source of randomness moves the result: seed studies that each vary one source, side by side.

    python experiments/variance_by_source.py W_init W_order W_augment W_all --plot sources.png

Reads each workdir's study.json (jaxrec study --vary ...) and prints one markdown row per study: the
sources it varied, the seeds, the mean and std of the metric with the std's 95% interval (chi-square:
with 5 seeds it spans about 0.6x to 2.9x the std), the share of the all-sources variance (with the F-test p-value of that ratio), how often
two seeds disagree on a test image, and the ensemble's accuracy. --plot draws every seed's value per
study, so outliers show.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from jaxrec.studies import stats


def row(study: dict[str, Any], metric: str, full: dict[str, Any] | None) -> str:
    """One study's markdown row (accuracy and F1 in percent); the share of `full`'s variance with the
    F-test p-value of that ratio."""
    m = study["metrics"][metric]
    share = stats.variance_ratio(m["values"], full["metrics"][metric]["values"]) if full else None
    scale = 1 if metric == "test_loss" else 100
    std = "-" if m["std"] is None else f"{scale * m['std']:.2f}"
    std += f" ({scale * m['std_ci95'][0]:.2f}-{scale * m['std_ci95'][1]:.2f})" if m["std_ci95"] else f" ({m['note']})"
    cells = [study["name"], ", ".join(study.get("varied", study["vary"])), str(m["n"]), f"{scale * m['mean']:.2f}", std,
             f"{share['ratio']:.2f} (p={share['p']:.2g})" if share and share["p"] is not None and study is not full
             else "-",
             f"{100 * study['disagreement']['mean']:.1f}%" if study.get("disagreement") else "-",
             f"{100 * study['ensemble_accuracy']:.2f}%" if study.get("ensemble_accuracy") is not None else "-"]
    return "| " + " | ".join(cells) + " |"


def table(studies: list[dict[str, Any]], metric: str) -> str:
    """The markdown table; 'share' is each study's variance over that of the first study varying every
    source (init, order and augment at least)."""
    full = next((s for s in studies if "all" in s["vary"] or {"init", "order", "augment"} <= set(s["vary"])), None)
    header = (f"| study | sources varied | seeds | mean {metric} | std (95% CI) | share of all-sources variance (F-test p) | "
              f"disagreement | ensemble |\n|---|---|---:|---:|---|---:|---:|---:|")
    return "\n".join([header, *(row(s, metric, full) for s in studies)])


def plot(studies: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Every seed's value per study (a strip per study, the mean as a bar)."""
    figure = Figure(figsize=(1.6 + 1.3 * len(studies), 3.6))
    axes = figure.add_subplot()
    scale = 100 if metric != "test_loss" else 1
    for x, study in enumerate(studies):
        values = [scale * v for v in study["metrics"][metric]["values"]]
        axes.scatter([x] * len(values), values, s=18, alpha=0.7)
        axes.hlines(sum(values) / len(values), x - 0.25, x + 0.25, color="black")
    axes.set_xticks(range(len(studies)), [f"{s['name']}\n({', '.join(s['vary'])})" for s in studies], fontsize=7)
    axes.set_ylabel(metric + (" (%)" if scale == 100 else ""))
    axes.set_title("seeds per source of randomness")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", type=Path, help="study workdirs (jaxrec study --workdir)")
    parser.add_argument("--metric", default="test_accuracy", choices=("test_accuracy", "test_macro_f1", "test_loss"))
    parser.add_argument("--plot", type=Path, help="also draw every seed's value per study into this PNG")
    args = parser.parse_args()
    studies = []
    for workdir in args.workdirs:
        path = workdir / "study.json"
        if not path.exists():
            print(f"error: {path} does not exist; finish the study first (rerun its jaxrec study command)",
                  file=sys.stderr)
            return 2
        studies.append({**json.loads(path.read_text()), "name": workdir.name})
    print(table(studies, args.metric))
    if args.plot:
        plot(studies, args.metric, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
