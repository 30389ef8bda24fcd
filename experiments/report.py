"""Print a Markdown table of finished runs from their workdirs (summary.json + metrics.jsonl).

    python experiments/report.py runs/cifar10_cnn_seed0 runs/cifar10_cnn_aug_seed0 > results/cifar10_cnn.md

Every figure comes from the files a run wrote; nothing is typed in by hand.
"""

import argparse
import json
from pathlib import Path

from jaxrec.run.outputs import read_jsonl


def describe(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    return {"dir": workdir, "summary": summary, "records": read_jsonl(workdir / "metrics.jsonl")}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--title", default="Runs")
    parser.add_argument("--data_label", default=None, help="name to show for the data set (default: as run)")
    args = parser.parse_args()
    runs = [describe(w) for w in args.workdirs]

    print(f"# {args.title}\n")
    print("| run | data | augment | epochs | test accuracy | test loss | macro F1 | train images/s | wall time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        s, c = run["summary"], run["summary"]["config"]
        print(f"| `{run['dir'].name}` | {args.data_label or s['dataset']['name']} | {c['augment']} | {s['epochs']} | "
              f"{100 * s['test_accuracy']:.2f}% | {s['test_loss']:.4f} | {s.get('test_macro_f1', float('nan')):.4f} | "
              f"{s['train_images_per_second']:.0f} | {s['wall_seconds'] / 60:.1f} min |")
    print("\nTest accuracy per epoch (%):\n")
    longest = max(len(r["records"]) for r in runs)
    print("| run | " + " | ".join(str(e) for e in range(1, longest + 1)) + " |")
    print("|---|" + "---|" * longest)
    for run in runs:
        cells = [f"{100 * r['test_accuracy']:.2f}" if "test_accuracy" in r else "-" for r in run["records"]]
        print(f"| `{run['dir'].name}` | " + " | ".join(cells) + " |")
    print("\nMachines and versions:\n")
    for run in runs:
        s = run["summary"]
        m, v = s["machine"], s["versions"]
        print(f"- `{run['dir'].name}`: finished {s['finished']}; {m['local_devices']} x {m['device_kind']} "
              f"({m['processor']}); jax {v['jax']}, flax {v['flax']}, optax {v['optax']}; "
              f"seed {s['seed']}, batch {s['config']['batch_size']}, lr {s['config']['learning_rate']}, "
              f"momentum {s['config']['momentum']}")


if __name__ == "__main__":
    main()
