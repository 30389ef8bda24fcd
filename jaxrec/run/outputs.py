"""What a run leaves in its workdir: config.json, dataset.json, metrics.jsonl, summary.json, curves.png,
eval.json, eval.md and confusion.png."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.figure import Figure  # drawn straight to files: no pyplot, no backend switched for the user
from matplotlib.ticker import MaxNLocator

from jaxrec.errors import STORAGE_ERRNOS, InputError, os_error_cause


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """`write` to a temporary file beside `path`, renamed over it when complete: a crash or a full disk never
    leaves half a file, and the earlier one stays whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        raise InputError(f"cannot write {path}: {os_error_cause(err.errno)}; free space (or fix the permissions) and "
                         f"run the same command again") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    _replace(path, lambda tmp: tmp.write_text(text))


def save_figure(fig: Figure, path: Path) -> None:
    """Lays `fig` out and writes it as a PNG, atomically."""
    # Text is first measured here: matplotlib's warning, with its source line, for each character the font lacks is
    # dropped, since a class name in another script is drawn as boxes and the plot is still written.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.tight_layout()
        _replace(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Writes one JSON record per line, atomically."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


PREDICTIONS_FILE = "test_predictions.npz"


def write_predictions(workdir: Path, probabilities: np.ndarray, labels: np.ndarray) -> None:
    """The eval split's class probabilities (float16, [N, classes]) and labels, compressed, atomically."""
    path = workdir / PREDICTIONS_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16), labels=labels.astype(np.int32))
    tmp.replace(path)


def read_predictions(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(workdir / PREDICTIONS_FILE) as saved:
        return saved["probabilities"], saved["labels"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(records: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train and test, side by side."""
    epochs = [r["epoch"] for r in records]
    evaluated = [r for r in records if "test_loss" in r]
    fig = Figure(figsize=(10, 4))
    panels = (("loss", 1, "cross-entropy loss"), ("accuracy", 100, "accuracy (%)"))  # metric, scale, y label
    for ax, (metric, scale, ylabel) in zip(fig.subplots(1, 2), panels):
        ax.plot(epochs, [scale * r[f"train_{metric}"] for r in records], "o-", label="train")
        ax.plot([r["epoch"] for r in evaluated], [scale * r[f"test_{metric}"] for r in evaluated], "s-", label="test")
        ax.set(xlabel="epoch", ylabel=ylabel, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def eval_markdown(report: dict[str, Any], title: str = "") -> str:
    """The evaluation report as Markdown: the summary scores, then one row per class."""
    lines = [f"# {title}", ""] if title else []
    lines += [f"{report['count']} examples: accuracy {report['accuracy']:.4f}, top-{report['top_k']} accuracy "
              f"{report['top_k_accuracy']:.4f}, loss {report['loss']:.4f}"
              + (f" (test-time augmentation level {report['tta']}; without it: accuracy "
                 f"{report['without_tta']['accuracy']:.4f}, loss {report['without_tta']['loss']:.4f})"
                 if report.get("tta") else ""), "",
              "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for row in report["per_class"]:
        lines.append(f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                     f"{row['support']} |")
    for average in ("macro", "weighted"):
        lines.append(f"| **{average} average** | {report[f'{average}_precision']:.4f} | "
                     f"{report[f'{average}_recall']:.4f} | {report[f'{average}_f1']:.4f} | {report['count']} |")
    if report.get("note"):  # e.g. classes the split has no examples of, which the macro averages count as 0
        lines += ["", f"Note: {report['note']}"]
    return "\n".join(lines) + "\n"


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path,
                   title: str = "") -> None:
    """Heat map of a confusion matrix, rows (true class) normalised to 1, with the counts written in."""
    counts = np.asarray(confusion, np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n = len(class_names)
    side = min(4 + 0.6 * n, 30)
    fig = Figure(figsize=(side, side * 0.85))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    if n <= 30:  # counts stay legible up to about this many classes
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    save_figure(fig, path)


def write_eval(directory: Path, report: dict[str, Any], suffix: str = "", title: str = "") -> list[Path]:
    """Writes eval{suffix}.json, eval{suffix}.md and confusion{suffix}.png into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"eval{suffix}.json", directory / f"eval{suffix}.md", directory / f"confusion{suffix}.png"]
    write_json(paths[0], report)
    write_text(paths[1], eval_markdown(report, title))
    plot_confusion(report["confusion"], report["class_names"], paths[2], title)
    return paths


def check_report_free(directory: Path, suffix: str, scored: dict[str, Any]) -> None:
    """Refuses to replace eval{suffix}.json in a folder other than the run's own if it scored another run or data
    set (or says nothing of what it scored): several runs' reports may share one --out, and each is a result."""
    path = directory / f"eval{suffix}.json"
    if not path.exists() or directory.resolve() == Path(scored["workdir"]).resolve():
        return
    try:
        found = json.loads(path.read_text()).get("scored", {})
    except (OSError, ValueError, AttributeError):
        found = {}
    if [found.get(key) for key in ("workdir", "dataset")] != [scored["workdir"], scored["dataset"]]:
        whose = f"{found['workdir']} on {found['dataset']}" if found.get("workdir") else "another run"
        raise InputError(f"--out {directory} already holds {path.name}, a report of {whose}; pass another --out "
                         f"for this one, or move that report away first")


def plot_study(runs: Sequence[dict[str, Any]], study: dict[str, Any], directory: Path) -> None:
    """A seed study's plots: test accuracy per epoch (mean, ±std, min-max), each seed's final accuracy, per class."""
    metrics, n = study["metrics"], len(runs)
    paths = [directory / name for name in ("study_curves.png", "study_accuracy.png", "study_per_class.png")]

    per_epoch = metrics["test_accuracy_per_epoch"]
    epochs = np.arange(1, len(per_epoch) + 1)
    mean, std = (np.array([100 * (d[key] or 0.0) for d in per_epoch]) for key in ("mean", "std"))  # std None: 1 seed
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.fill_between(epochs, [100 * d["min"] for d in per_epoch], [100 * d["max"] for d in per_epoch], alpha=0.15,
                    label="min-max")
    ax.fill_between(epochs, mean - std, mean + std, alpha=0.35, label="±1 std")
    ax.plot(epochs, mean, "o-", label=f"mean of {n} seeds")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy over seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, paths[0])

    final = metrics["test_accuracy"]
    fig = Figure(figsize=(6, 2.6))
    ax = fig.subplots()
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, n)  # only spreads the dots vertically
    ax.scatter([100 * v for v in final["values"]], jitter, s=40, alpha=0.7)
    for seed, value, y in zip([r["seed"] for r in runs], final["values"], jitter):
        ax.annotate(str(seed), (100 * value, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(100 * final["mean"], color="black", lw=1, label=f"mean {100 * final['mean']:.2f}%")
    if final["ci95"] is not None:  # None: one seed, or no spread (final["note"])
        ax.axvspan(100 * final["ci95"][0], 100 * final["ci95"][1], alpha=0.15, color="black",
                   label="95% CI of the mean")
    ax.set(xlabel="final test accuracy (%)", yticks=[], ylim=(-0.5, 0.5), title=f"{n} seeds")
    ax.legend(fontsize=8)
    save_figure(fig, paths[1])

    classes = list(metrics["per_class_accuracy"])
    fig = Figure(figsize=(max(6, 0.6 * len(classes)), 4))
    ax = fig.subplots()
    ax.bar(range(len(classes)), [100 * metrics["per_class_accuracy"][c]["mean"] for c in classes],
           yerr=[100 * (metrics["per_class_accuracy"][c]["std"] or 0.0) for c in classes], capsize=3)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set(ylabel="accuracy (%)", title=f"per-class accuracy, mean ± std over {n} seeds")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, paths[2])
