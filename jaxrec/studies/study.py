"""Seed studies: one training config run over many seeds, and what the spread says (docs/studies.md).
A study's workdir also holds `study_spec.json`, what was asked."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxrec.config import MAY_CHANGE_IN_STUDY, SEED_LIMIT, SOURCES, Config, check
from jaxrec.core.run_state import TIMING_FIELDS
from jaxrec.data.sources import dataset_location, split_is_seeded
from jaxrec.errors import InputError
from jaxrec.models.recipes import recorded_recipe_problem
from jaxrec.run import outputs
from jaxrec.run.checkpoints import data_differences, field_differences, latest_checkpoint_step, load_trained
from jaxrec.run.workdir import STUDY_SPEC_FILE, check_workdir
from jaxrec.runtime import distributed, host
from jaxrec.studies import stats
from jaxrec.training.loop import check_group, train_and_evaluate, train_group

log = logging.getLogger(__name__)

MAX_SEEDS = 1000  # a study trains every seed: more is a typo (0-100000) rather than a plan
FRACTION = (0.0, 1.0)  # the range of an accuracy, an F1 or a disagreement, where their intervals are clipped


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-9' -> 0..9, '0,3,7' -> (0, 3, 7), '0-2,5' -> (0, 1, 2, 5); refuses empty, unparsable, out-of-range and
    duplicate seeds, and more than MAX_SEEDS (before expanding a range)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            low, high = (int(x) for x in part.split("-", 1)) if "-" in part[1:] else (int(part), int(part))
        except ValueError:
            low, high = 0, -1  # refused just below
        if high < low:
            raise InputError(f"--seeds {text!r}: {part!r} is not a seed or a range like 0-9; e.g. --seeds 0-9 or "
                             f"--seeds 0,3,7")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise InputError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds; a study trains each one, so split it "
                             f"into studies of at most {MAX_SEEDS} (e.g. --seeds 0-{MAX_SEEDS - 1})")
        if low < 0 or high >= SEED_LIMIT:
            raise InputError(f"--seeds {text!r}: seed {low if low < 0 else high} is out of range; each seed must be in "
                             f"[0, {SEED_LIMIT})")
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise InputError(f"--seeds {text!r}: no seeds; e.g. --seeds 0-9 or --seeds 0,3,7")
    repeated = sorted(seed for seed, count in collections.Counter(seeds).items() if count > 1)
    if repeated:
        raise InputError(f"--seeds {text!r}: seed(s) {', '.join(map(str, repeated))} given twice; each seed once")
    return tuple(seeds)


def parse_vary(text: str) -> tuple[str, ...]:
    """'all' -> every source; 'init,order' -> those; refuses unknown names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return SOURCES
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise InputError(f"--vary {text!r}: {', '.join(unknown) or 'nothing'} is not a source of randomness; "
                         f"choose all or a comma list of {', '.join(SOURCES)}")
    return tuple(s for s in SOURCES if s in names)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What a study trains: a base config, the seeds, and which sources take them."""

    config: Config
    seeds: tuple[int, ...]
    vary: tuple[str, ...]
    base_seed: int = 0

    def seed_config(self, seed: int, workdir: Path) -> Config:
        """The config of one seed's run: `seed` for every varied source, base_seed for the rest."""
        run_dir = str(workdir / f"seed_{seed}")
        if set(self.vary) == set(SOURCES):  # exactly `jaxrec train --seed n`
            return self.config.replace(seed=seed, workdir=run_dir, save_predictions=True)
        own = {f"{source}_seed": seed for source in self.vary}
        return self.config.replace(seed=self.base_seed, workdir=run_dir, save_predictions=True, **own)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "seeds": list(self.seeds), "vary": list(self.vary),
                "base_seed": self.base_seed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudySpec":
        return cls(Config.from_dict(data["config"]), tuple(data["seeds"]), tuple(data["vary"]), data["base_seed"])


def fixed_sources(config: Config) -> dict[str, str]:
    """The sources of randomness no study seed can move in runs of `config`, each with the reason."""
    fixed = {source: f"--{source}_seed {seed} pins it" for source in SOURCES
             if (seed := getattr(config, f"{source}_seed")) is not None}
    if not (config.augment or config.translate or config.flip != "none"):
        fixed.setdefault("augment", "the run has no augmentation (pass --augment)")
    if not split_is_seeded(config.data_plan):
        fixed.setdefault("split", f"{config.dataset} has its own eval split (a TFDS set or a folder with split "
                                  "folders), so no seed draws it")
    return fixed


def check_sources(spec: StudySpec) -> tuple[str, ...]:
    """The sources the study's seeds actually vary (--vary all: those that can); refuses --seed, a source named in
    --vary that cannot vary, and --vary all when none can."""
    if spec.config.seed != 0:
        raise InputError(f"--seed {spec.config.seed}: a study sets each run's seed from --seeds (and --base_seed "
                         f"for the sources it does not vary); drop --seed, or pass --seeds {spec.config.seed}")
    fixed = fixed_sources(spec.config)
    if set(spec.vary) != set(SOURCES):
        for source in spec.vary:
            if source in fixed:
                others = [s for s in spec.vary if s != source]
                raise InputError(f"--vary {','.join(spec.vary)}: {source} cannot vary, {fixed[source]}; "
                                 + (f"pass --vary {','.join(others)}" if others else "vary another source"))
    varied = tuple(source for source in spec.vary if source not in fixed)
    if not varied:
        raise InputError(f"--vary all: no source can vary ({'; '.join(f'{s}: {r}' for s, r in fixed.items())}); "
                         "drop the --<source>_seed flags")
    return varied


def settings_differences(saved: dict[str, Any], config: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """The training settings (all but MAY_CHANGE_IN_STUDY: how a run runs, not what it trains) and the data set
    location that differ between two Config.to_dict()s, one line each, labelled by `names`."""
    different = field_differences(saved, config, MAY_CHANGE_IN_STUDY, names)
    if dataset_location(saved["dataset"]) != dataset_location(config["dataset"]):
        different.insert(0, f"dataset ({names[0]}: {dataset_location(saved['dataset'])!r}, "
                            f"{names[1]}: {dataset_location(config['dataset'])!r})")
    return different


def spec_differences(saved: StudySpec, spec: StudySpec) -> list[str]:
    """What differs between a workdir's study and the one asked for (seeds may be added)."""
    old, new = saved.to_json(), spec.to_json()
    # The spec's --seed never reaches a run (seed_config sets each run's); an older spec may record one: ignore it.
    different = settings_differences({**old["config"], "seed": 0}, new["config"], ("study", "now"))
    for key in ("vary", "base_seed"):
        if old[key] != new[key]:
            different.append(f"{key} (study: {old[key]!r}, now: {new[key]!r})")
    return different


def prepare(spec: StudySpec, workdir: Path) -> None:
    """Checks the spec, the workdir and its finished seeds; writes the spec. A workdir of another study is refused."""
    check(spec.config)
    check_sources(spec)
    if not 0 <= spec.base_seed < SEED_LIMIT:
        raise InputError(f"--base_seed {spec.base_seed}: must be in [0, {SEED_LIMIT})")
    for seed in spec.seeds:
        check(spec.seed_config(seed, workdir))  # e.g. a seed out of range
    # Process 0 alone checks and writes the spec: the others could catch the file half-written.
    distributed.on_primary(lambda: _write_spec(spec, workdir), f"the study in {workdir}")


def _write_spec(spec: StudySpec, workdir: Path) -> None:
    path = workdir / STUDY_SPEC_FILE
    if path.exists():
        try:
            saved = StudySpec.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path} is damaged ({type(error).__name__}: {error}); rerun with the study's settings "
                             f"after deleting {path} (the seed folders are checked against them), or use another "
                             "--workdir") from None
        different = spec_differences(saved, spec)
        if different:
            raise InputError(f"{workdir} holds a study with other settings: {'; '.join(different)}. Use the "
                             f"study's settings to continue it, or another --workdir.")
        left_out = [seed for seed in saved.seeds if seed not in spec.seeds and finished(workdir / f"seed_{seed}")]
        if left_out:  # its statistics would be rewritten without them
            seeds = (f"seeds {', '.join(map(str, left_out))} have" if len(left_out) > 1 else f"seed {left_out[0]} has")
            raise InputError(f"{workdir} holds a study whose {seeds} trained, and --seeds leaves them out; pass them "
                             f"too (more seeds may be added), or another --workdir")
    check_workdir(workdir, spec.config.force_workdir, kind="study")
    check_seed_folders(spec, workdir)  # before the spec is written: a refused study's spec stays as it was
    outputs.write_json(path, spec.to_json())


def finished(run_dir: Path) -> bool:
    """Whether a seed's run is complete in its folder: its summary and predictions exist."""
    return (run_dir / "summary.json").exists() and (run_dir / outputs.PREDICTIONS_FILE).exists()


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """A seed's summary.json; a damaged one is named in one line."""
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
        readable = isinstance(summary, dict) and {"config", "dataset"} <= set(summary)
        problem = None if readable else "no config or dataset"
    except (OSError, ValueError) as error:
        problem = f"{type(error).__name__}: {error}"
    if problem:
        raise InputError(f"{path} is damaged ({problem}); move {run_dir} away and run the same command again to "
                         "retrain that seed")
    return summary


def check_seed_folders(spec: StudySpec, workdir: Path) -> None:
    """Refuses a seed folder whose finished run is not the study's seed (docs/studies.md: a study never mixes runs)."""
    reference = None
    for seed in spec.seeds:
        run_dir = workdir / f"seed_{seed}"
        if not (run_dir / "summary.json").exists():
            continue
        summary = _read_summary(run_dir)
        different = settings_differences(summary["config"], spec.seed_config(seed, workdir).to_dict(),
                                       (f"seed_{seed}", "study"))
        if reference is not None:
            different += data_differences(reference[1], summary["dataset"], (f"seed_{reference[0]}", f"seed_{seed}"))
        if different:
            raise InputError(f"{run_dir} holds a run that is not this study's seed {seed}: {different[0]}; move it "
                             "away (the same command then retrains it) or use another --workdir")
        edited = recorded_recipe_problem(summary.get("recipe"), f"seed {seed} of the study in {workdir}")
        if edited:  # its seeds would pool two networks
            raise InputError(edited)
        reference = reference or (seed, summary["dataset"])


def metric_statistics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric statistics over the seeds' runs ({'summary', 'eval'} each; see stats.describe)."""
    metrics = {name: stats.describe([r["summary"][name] for r in runs], bounds=bounds)
               for name, bounds in (("test_accuracy", FRACTION), ("test_loss", (0, math.inf)),
                                    ("test_macro_f1", FRACTION))}
    per_epoch = [r["summary"]["test_accuracy_per_epoch"] for r in runs]
    metrics["test_accuracy_per_epoch"] = [stats.describe([p[e] for p in per_epoch], bounds=FRACTION)
                                          for e in range(len(per_epoch[0])) if all(p[e] is not None for p in per_epoch)]
    metrics["per_class_accuracy"] = {  # a class's accuracy is its recall
        name: stats.describe([r["eval"]["per_class"][i]["recall"] for r in runs], bounds=FRACTION)
        for i, name in enumerate(runs[0]["eval"]["class_names"])}
    return metrics


def agreement(probabilities: dict[int, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Between-seed disagreement (mean over pairs of the fraction of test images two seeds predict
    differently) and the accuracy of the seeds' ensemble (averaged probabilities)."""
    seeds = sorted(probabilities)
    predicted = {s: probabilities[s].argmax(-1) for s in seeds}
    pairs = [float(np.mean(predicted[a] != predicted[b])) for a, b in itertools.combinations(seeds, 2)]
    ensemble = np.mean([probabilities[s].astype(np.float64) for s in seeds], axis=0).argmax(-1)
    return {"disagreement": stats.describe(pairs, unit="pair", bounds=FRACTION) if pairs else None,
            "ensemble_accuracy": float(np.mean(ensemble == labels)), "ensemble_size": len(seeds)}


def run_study(spec: StudySpec, workdir: str | Path, seeds_per_program: int = 1,
              model_axis: str = "loop") -> dict[str, Any]:
    """Trains every unfinished seed of `spec` (resuming a stopped one), `seeds_per_program` per program (train_group,
    with `model_axis`), then writes and returns the study's statistics (write_study)."""
    workdir = Path(workdir)
    if seeds_per_program < 1:
        raise InputError(f"--seeds_per_program {seeds_per_program}: must be 1 or more (models trained in one program)")
    if seeds_per_program > 1:  # before the spec is written: a refused study leaves nothing behind
        check_group([spec.seed_config(seed, workdir) for seed in spec.seeds], model_axis)
    prepare(spec, workdir)
    todo = [seed for seed in spec.seeds if not finished(Path(spec.seed_config(seed, workdir).workdir))]
    log.info("study in %s: %d seeds, %d finished, varying %s; %d per program", workdir, len(spec.seeds),
             len(spec.seeds) - len(todo), ", ".join(check_sources(spec)), seeds_per_program)
    bar = tqdm(total=len(spec.seeds), initial=len(spec.seeds) - len(todo), unit="model", desc="study",
               disable=not (spec.config.progress and distributed.is_primary()))
    started, done = time.time(), 0
    for seeds in programs(todo, workdir, seeds_per_program):
        configs = [spec.seed_config(seed, workdir) for seed in seeds]
        eta = f", about {(time.time() - started) / done * (len(todo) - done) / 60:.0f} min left" if done else ""
        log.info("study: seed %s (%d-%d of %d to train)%s", ", ".join(map(str, seeds)), done + 1,
                 done + len(seeds), len(todo), eta)
        train_group(configs, model_axis if len(configs) > 1 else "loop")  # one seed trains as its plain run does
        for seed, config in zip(seeds, configs):
            summary = json.loads((Path(config.workdir) / "summary.json").read_text())
            bar.set_postfix(seed=seed, acc=f"{summary['test_accuracy']:.4f}",
                            img_s=f"{summary['train_images_per_second'] * len(seeds):.0f}")
            bar.update()
        done += len(seeds)
    bar.close()
    check_seed_folders(spec, workdir)  # the seeds just trained read the data set as the others did
    study = write_study(spec, workdir, write=distributed.is_primary())
    distributed.barrier("jaxrec: study written")
    return study


def programs(seeds: list[int], workdir: Path, seeds_per_program: int) -> list[list[int]]:
    """Programs of up to `seeds_per_program` seeds at one step each, the furthest first (docs/studies.md)."""
    by_step: dict[int, list[int]] = {}
    for seed in seeds:
        by_step.setdefault(latest_checkpoint_step(workdir / f"seed_{seed}"), []).append(seed)
    return [same[i:i + seeds_per_program] for step, same in sorted(by_step.items(), reverse=True)
            for i in range(0, len(same), seeds_per_program)]


def check_determinism(spec: StudySpec, workdir: str | Path) -> dict[str, Any]:
    """Trains the study's first seed twice (WORKDIR/determinism/first, second); returns, and writes to
    determinism.json, whether their metrics, variables and test predictions are bit-identical."""
    prepare(spec, Path(workdir))  # the study's own checks first: nothing is trained for a study that is refused
    root = Path(workdir) / "determinism"
    runs = []
    for name in ("first", "second"):
        config = spec.seed_config(spec.seeds[0], root).replace(workdir=str(root / name))
        train_and_evaluate(check(config), config.workdir)
        runs.append({"records": [{k: v for k, v in r.items() if k not in TIMING_FIELDS}
                                 for r in outputs.read_jsonl(root / name / "metrics.jsonl")],
                     "variables": load_trained(root / name, "latest").variables,
                     "probabilities": outputs.read_predictions(root / name)[0]})
    first, second = runs
    result = {"seed": spec.seeds[0], "metrics_identical": first["records"] == second["records"],
              "parameters_identical": all(np.array_equal(a, b) for a, b in zip(
                  jax.tree_util.tree_leaves(first["variables"]), jax.tree_util.tree_leaves(second["variables"]))),
              "predictions_identical": bool(np.array_equal(first["probabilities"], second["probabilities"])),
              "machine": host.machine(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    result["bit_identical"] = all(value for key, value in result.items() if key.endswith("_identical"))
    if distributed.is_primary():
        outputs.write_json(Path(workdir) / "determinism.json", result)
    return result


def write_study(spec: StudySpec, workdir: Path, write: bool = True) -> dict[str, Any]:
    """Reads every seed's outputs into the study's statistics; `write`s study.json, study.md and the plots."""
    runs, probabilities, labels = [], {}, None
    for seed in spec.seeds:
        run_dir = workdir / f"seed_{seed}"
        runs.append({"seed": seed, "summary": _read_summary(run_dir),
                     "eval": json.loads((run_dir / "eval.json").read_text())})
        probabilities[seed], labels = outputs.read_predictions(run_dir)
    study = {"metrics": metric_statistics(runs), **agreement(probabilities, labels),
             "seeds": list(spec.seeds), "vary": list(spec.vary), "base_seed": spec.base_seed,
             "varied": list(check_sources(spec)),  # what the seeds moved: --vary all leaves out what cannot vary
             "dataset": {**runs[0]["summary"]["dataset"], "location": dataset_location(spec.config.dataset)},
             # how each seed ran: the device count and the models per program can change the rounding
             "num_devices": [run["summary"]["num_devices"] for run in runs],
             "seeds_per_program": [run["summary"].get("seeds_per_program", 1) for run in runs],
             "model_axis": [run["summary"].get("model_axis") for run in runs],  # None: one model, or not recorded
             "seed_xla_flags": [run["summary"].get("xla_flags") for run in runs],  # None: not recorded then
             "config": spec.config.to_dict(), "recipe": runs[0]["summary"].get("recipe"),  # a file's path, sha256
             "versions": host.versions(), "machine": host.machine(),
             "xla_flags": os.environ.get("XLA_FLAGS", ""),  # of the process that wrote this summary
             "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if write:
        outputs.write_json(workdir / "study.json", study)
        outputs.write_text(workdir / "study.md", study_markdown(study))
        outputs.plot_study(runs, study, workdir)
    return study


def study_markdown(study: dict[str, Any]) -> str:
    """The study's table: each metric's mean, std, intervals and range over the seeds."""
    m = study["metrics"]
    seeds = f"{len(study['seeds'])} seed{'' if len(study['seeds']) == 1 else 's'}"
    lines = [f"# Seed study: {seeds}, varying {', '.join(study.get('varied', study['vary']))}", "",
             "| metric | mean | std (95% CI) | mean's 95% CI (t) | mean's 95% CI (bootstrap) | min | max |",
             "|---|---:|---:|---|---|---:|---:|"]
    notes: dict[str, list[str]] = {}  # metrics by why they have no intervals
    for name in ("test_accuracy", "test_loss", "test_macro_f1"):
        d = m[name]
        lines.append(f"| {name} | {d['mean']:.4f} | {_number(d['std'])} ({_interval(d['std_ci95'])}) | "
                     f"{_interval(d['ci95'])} | {_interval(d['bootstrap_ci95'])} | {d['min']:.4f} | {d['max']:.4f} |")
        if d.get("note"):
            notes.setdefault(d["note"], []).append(name)
    for note, names in sorted(notes.items()):
        lines += ["", f"No intervals for {', '.join(names)}: {note}."]
    if study["disagreement"]:
        lines += ["", f"Between-seed disagreement: {study['disagreement']['mean']:.4f} of test images (mean over "
                  f"pairs); ensemble of {study['ensemble_size']} seeds: accuracy {study['ensemble_accuracy']:.4f}."]
    lines += ["", "| class | accuracy mean | std |", "|---|---:|---:|"]
    lines += [f"| {name} | {d['mean']:.4f} | {_number(d['std'])} |" for name, d in m["per_class_accuracy"].items()]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(bounds: list[float] | None) -> str:
    return "-" if bounds is None else f"{bounds[0]:.4f}-{bounds[1]:.4f}"
