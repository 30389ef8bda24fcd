"""Print a Markdown table of finished runs from their workdirs (summary.json + metrics.jsonl).

    python experiments/report.py runs/cifar10_cnn_seed0 runs/cifar10_cnn_aug_seed0 > results/cifar10_cnn.md

Every figure comes from the files a run wrote; nothing is typed in by hand.
"""

import argparse
import json
import sys
from pathlib import Path

from jaxrec.config import Config
from jaxrec.core.optim import total_steps
from jaxrec.run.outputs import read_jsonl
from jaxrec.run.workdir import workdir_kind


def problem(workdir: Path) -> str | None:
    """Why `workdir` is not a finished run's folder, or None."""
    if not workdir.exists():
        return f"{workdir} does not exist; pass the workdir of a finished run"
    if not workdir.is_dir():
        return f"{workdir} is a file; pass the workdir of a finished run"
    if workdir_kind(workdir) == "study":
        seeds = sorted(p.name for p in workdir.glob("seed_*") if p.is_dir())
        summary = f" or read {workdir / 'study.md'}" if (workdir / "study.md").exists() else ""
        first = workdir / (seeds[0] if seeds else "seed_0")
        return f"{workdir} is a seed study, not a run; pass its runs ({first} ...){summary}"
    if not (workdir / "summary.json").exists():  # written last: without it the run did not finish
        return f"{workdir} holds no finished run (no summary.json); pass the workdir of a run that finished"
    return None


def stopped_early(summary: dict) -> bool:
    """Whether --max_steps ended the run before its schedule's last step (the loop's steps per epoch: whole batches
    of the training split)."""
    config = summary["config"]
    per_epoch = summary["dataset"].get("train_examples", 0) // config["batch_size"]
    scheduled = total_steps(Config(epochs=config["epochs"]).optimisation, per_epoch)
    return bool(config.get("max_steps")) and summary["steps"] < scheduled


def augmentation(config: dict) -> str:
    """What a run's training images went through: --augment's crop and flip, or --translate and --flip."""
    parts = ((["crop + flip"] if config.get("augment") else []) +
             ([f"translate {config['translate']}"] if config.get("translate") else []) +
             ([f"flip {config['flip']}"] if config.get("flip", "none") != "none" else []))
    return ", ".join(parts) or "none"


def describe(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    return {"dir": workdir, "summary": summary, "records": read_jsonl(workdir / "metrics.jsonl")}


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--title", default="Runs")
    parser.add_argument("--data_label", default=None, help="name to show for the data set (default: as run)")
    args = parser.parse_args()
    refused = next(filter(None, map(problem, args.workdirs)), None)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    runs = [describe(w) for w in args.workdirs]

    print(f"# {args.title}\n")
    print("| run | data | augment | epochs | test accuracy | test loss | macro F1 | train images/s | wall time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        s, c = run["summary"], run["summary"]["config"]
        # a run cut short is not one of its --epochs: say so, with the steps it trained
        epochs = f"{s['epochs']} (stopped by --max_steps at step {s['steps']})" if stopped_early(s) else s["epochs"]
        data = args.data_label or s["dataset"]["name"]
        print(f"| `{run['dir'].name}` | {data} | {augmentation(c)} | {epochs} | "
              f"{100 * s['test_accuracy']:.2f}% | {s['test_loss']:.4f} | {s.get('test_macro_f1', float('nan')):.4f} | "
              f"{s['train_images_per_second']:.0f} | {s['wall_seconds'] / 60:.1f} min |")
    print("\nTest accuracy per epoch (%):\n")
    longest = max(len(r["records"]) for r in runs)
    print("| run | " + " | ".join(str(e) for e in range(1, longest + 1)) + " |")
    print("|---|" + "---|" * longest)
    for run in runs:
        cells = [f"{100 * r['test_accuracy']:.2f}" if r.get("test_accuracy") is not None else "-"
                 for r in run["records"]]
        cells += [""] * (longest - len(cells))  # a shorter run's row still has every column
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
    sys.exit(main())
