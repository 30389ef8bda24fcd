"""The `jaxrec` subcommands: train|evaluate|predict|study|benchmark|prepare (also `python -m jaxrec`). Their run
flags come from `Config` (jaxrec.cli.flags): one spelling, help text and check; experiment scripts are recipes
over `train` (`run_experiment`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from jaxrec.cli import flags
from jaxrec.config import (BENCHMARK_UNUSED, EVALUATION_FIELDS, MODELS, BenchmarkOptions, Config, at_least, check,
                           is_recipe_file)
from jaxrec.errors import STORAGE_ERRNOS, InputError, SaveError, os_error_cause
from jaxrec.models import config_for
from jaxrec.run.workdir import removed_if_failed, writable_folder
from jaxrec.runtime.interrupt import TrainingInterrupted, exit_on_signals
from jaxrec.runtime.setup import prepare
from jaxrec.studies.compare import METRICS, compare_studies, read_study

USAGE = """Train, evaluate and reproduce image classifiers with JAX.

examples:
  jaxrec train --dataset cifar10_sample --epochs 3
  jaxrec train --dataset path/to/cifar10-jpeg --seed 0 --workdir runs/seed0
  jaxrec train --model airbench94 --dataset path/to/cifar10-jpeg
  jaxrec evaluate --workdir runs/seed0
  jaxrec predict --workdir runs/seed0 photo.jpg photos/
  jaxrec study --dataset cifar10_sample --epochs 3 --seeds 0-4 --workdir runs/study
  jaxrec compare runs/study_augment runs/study
  jaxrec benchmark
  jaxrec prepare cifar10 --data_dir DIR

`jaxrec COMMAND --help` lists a command's flags and their defaults."""


def setup_logging(label: str = "") -> None:
    """jaxrec's own progress at INFO, other libraries' warnings; `label` starts every line ('process I/N ')."""
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {label}%(message)s", datefmt="%H:%M:%S",
                        force=True)
    logging.getLogger("jaxrec").setLevel(logging.INFO)


def start_jax(config: Config, only: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None) -> Config:
    """jaxrec.runtime.setup.prepare, then labels log lines with the process; one that joins others runs supervised."""
    setup_logging()
    from jaxrec.runtime import supervisor  # no JAX: a supervising parent never needs it

    if supervisor.needed(config):  # joins other processes: run it as a child that a lost peer cannot crash
        check(config, only)
        raise SystemExit(supervisor.run_supervised(config))
    supervisor.watch_lifeline()
    prepared = prepare(config, only, batch_sizes)
    from jaxrec.runtime import distributed
    setup_logging(distributed.label())
    return prepared


def exit_code(command: Callable[[], int | None], heartbeat_timeout: int = Config.heartbeat_timeout,
              trains: bool = False) -> int:
    """Runs a command; returns its exit code (None counts as 0). Bad input, a diverged run or a full disk print one
    line and return 2; a signal ends it with 128 + its number (`trains`: after a checkpoint, saying how to resume).
    In a multi-process run, losing another process ends this one within `heartbeat_timeout` seconds."""
    try:
        with exit_on_signals(trains):  # a signal outside training ends the process at once, with one line
            return command() or 0
    except SaveError as err:
        if err.__cause__ is not None and "jaxrec.runtime.distributed" in sys.modules:  # a peer died mid-save
            sys.modules["jaxrec.runtime.distributed"].leave_after_lost_process(err.__cause__, heartbeat_timeout)
        # One line to the real stderr, then out at once: the storage layer's threads (their noise dropped by
        # jaxrec.run.storage_noise) are in an unknown state, and a normal exit would wait on their clean-up.
        sys.stdout.flush()
        os.write(2, f"error: {err}\n".encode())
        os._exit(2)
    except (InputError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        print(f"error: {os_error_cause(err.errno)}{f' ({err.filename})' if err.filename else ''}; free space (or fix "
              f"the permissions) and run the same command again: a run resumes from its last checkpoint",
              file=sys.stderr)
        return 2
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return stopped.exit_code
    except Exception as err:  # noqa: BLE001 - only a multi-process run's lost peer is handled; the rest re-raise
        if "jaxrec.runtime.distributed" in sys.modules:  # imported only where processes may have been joined
            sys.modules["jaxrec.runtime.distributed"].leave_after_lost_process(err, heartbeat_timeout)
        raise


def train(config: Config) -> int:
    """Checks `config`, then trains and evaluates it into config.workdir (default: config.default_workdir())."""

    def run() -> None:
        checked = start_jax(config.replace(workdir=config.workdir or config.default_workdir()))
        from jaxrec.training.loop import train_and_evaluate

        train_and_evaluate(checked, checked.workdir)

    return exit_code(run, config.heartbeat_timeout, trains=True)


def run_experiment(argv: Sequence[str] | None, description: str | None, defaults: Config,
                   aliases: dict[str, str] | None = None) -> int:
    """An experiment script's main: training flags over the recipe's `defaults` (and `aliases`), then `train`."""
    return train(flags.parse_config(argv, description, defaults, aliases))


def _study(args: argparse.Namespace) -> int:
    """`jaxrec study`: `config` once per seed of --seeds, then study.json/.md and plots (docs/studies.md)."""
    config = flags.config_of(args)

    def run() -> None:
        from jaxrec.studies.study import StudySpec, check_determinism, parse_seeds, parse_vary, run_study

        spec = StudySpec(config.replace(workdir=None), parse_seeds(args.seeds), parse_vary(args.vary), args.base_seed)
        workdir = Path(config.workdir or Path("runs") / f"study_{config.model_tag}_{config.dataset_tag}")
        if args.compare_with:  # before anything trains: a study.json that cannot be read fails now
            read_study(args.compare_with, "test_accuracy")
        start_jax(config)
        from jaxrec.runtime import distributed
        if args.check_determinism:
            same = check_determinism(spec, workdir)
            if distributed.is_primary():
                identical = "bit-identical" if same["bit_identical"] else "NOT identical"
                print(f"seed {same['seed']} trained twice: {identical} "
                      f"(metrics {same['metrics_identical']}, parameters {same['parameters_identical']}, "
                      f"predictions {same['predictions_identical']}); {workdir / 'determinism.json'}")
        run_study(spec, workdir, args.seeds_per_program, args.model_axis)
        if distributed.is_primary():  # the one process that wrote them
            print((workdir / "study.md").read_text(), end="")
            print(f"wrote {workdir / 'study.json'}, {workdir / 'study.md'} and {workdir}/study_*.png")
            if args.compare_with:
                print_comparison(compare_studies(workdir, args.compare_with), as_json=False)

    return exit_code(run, config.heartbeat_timeout, trains=True)


def print_comparison(result: dict[str, Any], as_json: bool) -> None:
    """A comparison of two studies (jaxrec.studies.compare), led by a warning where their data differ."""
    if result["warnings"]:  # first, so that nobody reads the verdict without it
        print(f"warning: A and B were scored on different data: {'; '.join(result['warnings'])}. The comparison "
              f"below mixes data sets or splits.", file=sys.stderr)
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))  # undefined statistics are null, never NaN
    else:
        print(f"{result['metric']}: A = {result['a']} (n={result['n_a']}), B = {result['b']} (n={result['n_b']})")
        print(result["verdict"])


def _add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="the training run's output directory")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="checkpoint: best test accuracy, or the latest")


def _evaluate(args: argparse.Namespace) -> None:
    overrides = {"num_devices": 0, "cpu_devices": 0, **flags.values_of(args, Config)}  # unless told: all
    check(Config(**overrides))  # the flags given, and their combinations as train checks them
    out = Path(getattr(args, "out", args.workdir)).expanduser()
    with removed_if_failed(out):  # a refused evaluation leaves no empty --out behind
        # Checked before evaluating; a missing workdir is load_trained's to name.
        if hasattr(args, "out") or out.is_dir():
            writable_folder(out, "--out")
        start_jax(Config(**overrides), only=list(overrides), batch_sizes=())  # before the checkpoint starts JAX
        from jaxrec.data.sources import refuse_tfds_flags
        from jaxrec.evaluation.evaluator import evaluate_trained
        from jaxrec.run import outputs
        from jaxrec.run.checkpoints import load_trained

        trained = load_trained(args.workdir, args.which)
        config = trained.config.replace(**overrides)
        # Only what was typed: a run trained before training refused them may have them recorded.
        refuse_tfds_flags(Config(**{**overrides, "dataset": config.dataset}).data_plan)
        dataset = Path(config.dataset).name if config.dataset != trained.config.dataset else None
        latest = "latest" if trained.which == "latest" else None
        suffix = "_" + "_".join(filter(None, [dataset, config.eval_split, latest]))
        # What was scored, in the report itself: reports of several runs may share one --out.
        scored = {"workdir": str(Path(args.workdir).expanduser().absolute()), "which": trained.which,
                  "step": trained.step, "epoch": trained.epoch, "dataset": config.dataset,
                  "split": config.eval_split}
        outputs.check_report_free(out, suffix, scored)
        result = {"scored": scored, **evaluate_trained(trained, config)}
        title = (f"{trained.config.model_tag} ({trained.which} checkpoint, epoch {trained.epoch}) on "
                 f"{dataset or trained.config.dataset_tag}/{config.eval_split}")
        paths = outputs.write_eval(out, result, suffix, title)
        print(outputs.eval_markdown(result, title))
        print("wrote " + ", ".join(map(str, paths)))


def _predict(args: argparse.Namespace) -> int:
    setup_logging()
    from jaxrec.evaluation.predict import Predictor
    from jaxrec.run.checkpoints import load_trained

    entries = Predictor(load_trained(args.workdir, args.which), args.batch_size).predict(args.inputs, args.top_k)
    if args.json:
        print(json.dumps(entries, indent=2))
    for entry in entries:
        if "error" in entry:
            print(f"{entry['path']}: error: {entry['error']}", file=sys.stderr)
        elif not args.json:
            decoded = f" ({'; '.join(entry['decoded'])})" if entry.get("decoded") else ""
            print(f"{entry['path']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in entry["top_k"])
                  + decoded)
    failed = sum("error" in entry for entry in entries)
    if failed:
        print(f"{failed} of {len(entries)} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def _benchmark(args: argparse.Namespace) -> None:
    options = BenchmarkOptions(**flags.values_of(args, BenchmarkOptions))  # each value checked as its flag parsed
    # Its flags leave out the fields a benchmark does not time: those keep the recipe's defaults.
    config = flags.config_of(args, model_defaults(["--model", args.model])).replace(progress=False)
    config = start_jax(config)
    from jaxrec.benchmark import format_report, run_benchmark

    result = run_benchmark(config, options)
    print(json.dumps(result, indent=2) if args.json else format_report(result))


def _prepare(args: argparse.Namespace) -> int:
    from jaxrec.data import tfds_prepare  # no JAX: runs beside a separate TensorFlow folder
    tfds_prepare.check_tfds_name(args.name)
    if args.check:
        found = tfds_prepare.ready(args.name, args.data_dir)
        print(f"{args.name} is {'' if found else 'not '}prepared in {args.data_dir or 'TFDS default'} as "
              f"jaxrec reads it")
        return 0 if found else 1
    builder = tfds_prepare.builder(args.name, args.data_dir)
    tfds_prepare.prepare(builder, args.name)
    tfds_prepare.check_prepared(builder, args.name)
    print(f"{args.name} is prepared in {builder.data_dir} ({tfds_prepare.FORMAT})")
    return 0


def model_defaults(argv: Sequence[str] | None) -> Config:
    """The flags' defaults: Config's with the DEFAULTS of the recipe --model names in `argv`, so --help shows that
    recipe's values. A recipe file that cannot be used ends the command in one line."""
    model = flags.model_in(argv)
    if model is None or (model not in MODELS and not is_recipe_file(model)):
        return Config()  # an unknown name is refused by the parser, with the names it takes
    try:
        return config_for(model)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def add_config_flags(parser: argparse.ArgumentParser, defaults: Config, only: Sequence[str] | None = None) -> None:
    """The Config's flags, with `defaults`, and one per knob of the recipe file it names."""
    flags.add_flags(parser, Config, defaults, only=only)
    knobs = flags.own_knobs(defaults.model)
    if knobs is not None:
        flags.add_knob_flags(parser, defaults.model, knobs, knobs(**dict(defaults.knobs)))


def _add_train(commands, defaults: Config) -> None:
    parser = commands.add_parser("train", help="train and evaluate a model (every Config field is a flag)",
                                 description=Config.__doc__)
    add_config_flags(parser, defaults)
    parser.set_defaults(main=lambda args: train(flags.config_of(args)))


def _add_evaluate(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "evaluate", help="per-class scores and confusion matrix of a run's checkpoint",
        description="Evaluates a run's checkpoint on a split of its data set, or of another with the same classes. "
                    "Writes eval_<split>.json/.md and confusion_<split>.png into --out (default: the workdir); "
                    "the run's own eval.json is never overwritten.")
    _add_checkpoint_flags(parser)
    parser.add_argument("--out", default=argparse.SUPPRESS, help="folder for the report files (default: the workdir)")
    flags.add_flags(parser, Config, only=EVALUATION_FIELDS, inherit=True,
                    aliases={"split": "eval_split", "batch_size": "eval_batch_size"})
    parser.set_defaults(main=lambda args: exit_code(lambda: _evaluate(args)))


def _add_predict(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "predict", help="top-k classes of new images with a run's checkpoint",
        description="Classifies image files and folders (searched recursively) with the training preprocessing. "
                    "A file that cannot be read gets its own error line and the exit code 1; the others are "
                    "still classified.")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders")
    _add_checkpoint_flags(parser)
    flags.add_flags(parser, Config, only=("top_k",))
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text lines")
    parser.add_argument("--batch_size", type=flags.checked(int, at_least(1)), default=256,
                        help="images per device call")
    parser.set_defaults(main=lambda args: exit_code(lambda: _predict(args)))


def _add_study(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "study", help="train one config over many seeds; the spread, intervals, disagreement, ensemble",
        description="A seed study: every training flag, plus the seeds and the sources of randomness they set. "
                    "Each seed is a normal run in WORKDIR/seed_<n>; WORKDIR/study.json and study.md hold the "
                    "statistics. Rerun the same command to continue a stopped study.")
    add_config_flags(parser, defaults)
    parser.add_argument("--seeds", required=True, help="a range 0-9, a list 0,3,7, or both: 0-4,9")
    parser.add_argument("--vary", default="all", help="the sources that take each study seed: all, or a comma list "
                                                      "of init, order, augment, split (the others keep --base_seed)")
    parser.add_argument("--base_seed", type=int, default=0, help="the seed of the sources not varied")
    parser.add_argument("--check_determinism", action="store_true",
                        help="first train the first seed twice and report whether the runs are bit-identical")
    parser.add_argument("--compare_with", type=Path, metavar="WORKDIR",
                        help="end with this study against the study in WORKDIR (as jaxrec compare): is it better?")
    flags.add_flags(parser, BenchmarkOptions, only=("seeds_per_program", "model_axis"))
    parser.set_defaults(main=_study)


def _add_compare(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "compare", help="is study A better than study B? Welch's test, P(A>B), the seeds a difference needs",
        description="Compares two seed studies (their workdirs' study.json) on a metric: the difference of means "
                    "with Welch's 95% interval and p-value, P(A>B) (a random seed of A beats a random seed of B) "
                    "with a bootstrap interval, the seeds per arm a difference of this size needs, and a verdict "
                    "line. For test_loss, lower is better. A warning comes first where their data differ.")
    parser.add_argument("a", type=Path, help="study A's workdir")
    parser.add_argument("b", type=Path, help="study B's workdir")
    parser.add_argument("--metric", default="test_accuracy", choices=METRICS)
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(main=lambda args: exit_code(
        lambda: print_comparison(compare_studies(args.a, args.b, args.metric), args.json)))


def _add_benchmark(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "benchmark", help="training and evaluation speed on random data",
        description="Times the training loop's own compiled train step and evaluator on random data: images/s, "
                    "compile time, FLOPs, fraction of a measured matmul peak, peak host memory.")
    add_config_flags(parser, defaults, [f.name for f in dataclasses.fields(Config) if f.name not in BENCHMARK_UNUSED])
    flags.add_flags(parser, BenchmarkOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.set_defaults(main=lambda args: exit_code(lambda: _benchmark(args)))


def _add_prepare(commands, defaults: Config) -> None:
    parser = commands.add_parser(
        "prepare", help="download and prepare a TFDS data set once, for reading without TensorFlow",
        description="Prepares a TFDS data set in the array_record format, which training reads without "
                    "TensorFlow. Preparing needs TensorFlow (the tfds extra, or a separate folder on a TPU/GPU "
                    "runtime: docs/install.md) and internet; --check needs neither.")
    parser.add_argument("name", help="a TFDS data set name, e.g. cifar10")
    parser.add_argument("--data_dir", default=None, help="where to put it (default: TFDS's, ~/tensorflow_datasets)")
    parser.add_argument("--check", action="store_true",
                        help="only say whether it is prepared as jaxrec reads it (exit 0) or not (exit 1)")
    parser.set_defaults(main=lambda args: exit_code(lambda: _prepare(args)))


def build_parser(defaults: Config | None = None) -> flags.Parser:
    """The `jaxrec` parser with its subcommands; `defaults`: the training flags' (model_defaults)."""
    parser = flags.Parser(prog="jaxrec", description=USAGE)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=flags.Parser)
    for add in (_add_train, _add_evaluate, _add_predict, _add_study, _add_compare, _add_benchmark, _add_prepare):
        add(commands, defaults or Config())
    parser.commands = commands.choices
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `jaxrec` console script."""
    parser = build_parser(model_defaults(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # refused by the command's parser, whose --help lists its flags
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.main(args)
