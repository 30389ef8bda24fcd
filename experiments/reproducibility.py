"""What is bit-reproducible: one seed trained under different settings, compared after one step and
after one epoch with the plain run (the numbers behind docs/reproducibility.md).

    python experiments/reproducibility.py --dataset DATA --workdir runs/reproducibility [--epochs 1]

Each case trains the same config (article defaults, seed 0, plus any training flag) in a process of
its own, because the device count and the visible cores are fixed when JAX starts:
    again        the plain run once more
    devices_2/8  one process with 2 / 8 CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count)
    one_core     the plain run pinned to one core (taskset -c 0): what another core count does
    loop_K2      seed 0 trained beside seed 1 in one program (jaxrec study --seeds_per_program 2)
    vmap_K2      the same with --model_axis vmap
    other_jax    the plain run in another Python environment (--other_python: another JAX and jaxlib)
For each: bit-identical or not, the largest parameter difference and the relative L2 difference
after step 1 and after the last epoch, the test accuracy and the fraction of test images predicted
differently. Writes WORKDIR/reproducibility.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CASES = {  # name: (XLA device count or None, pinned to one core, models per program, model axis)
    "plain": (None, False, 1, "loop"), "again": (None, False, 1, "loop"), "devices_2": (2, False, 1, "loop"),
    "devices_8": (8, False, 1, "loop"), "one_core": (None, True, 1, "loop"), "loop_K2": (None, False, 2, "loop"),
    "vmap_K2": (None, False, 2, "vmap"), "other_jax": (None, False, 1, "loop"),
}


def run_case(name: str, config_flags: list[str], workdir: Path) -> None:
    """Trains one case in this process: params after one step (params_step1.npy) and a full run."""
    import jax
    import numpy as np

    from jaxrec.cli import flags
    from jaxrec.config import Config, check
    from jaxrec.data import load_data
    from jaxrec.run.writers import Writers
    from jaxrec.training.loop import create_trainer, restore_or_start, train_and_evaluate, train_call, train_group
    from jaxrec.core.parallel import select_devices, unreplicate

    _, _, models, axis = CASES[name]
    shutil.rmtree(workdir / name, ignore_errors=True)  # a case that did not finish starts over
    config = check(flags.parse_config(config_flags, None, Config(progress=False, save_predictions=True)))
    configs = [config.replace(seed=seed, workdir=str(workdir / name / f"seed_{seed}")) for seed in range(models)]
    devices = select_devices(0)
    data = load_data(config.data_plan)
    workdirs = [Path(member.workdir) for member in configs]
    for path in workdirs:
        path.mkdir(parents=True)
    trainer = create_trainer(configs, workdirs, data, devices, axis)
    states, runs, _ = restore_or_start(trainer)
    orders = trainer.order(0)[:1]  # the first step: [1, K, batch]
    feed = trainer.inputs.for_epoch(0, [(0, 1)], trainer.program)
    state, _ = train_call(trainer, trainer.program.stack(states), runs, [Writers()] * models, orders, feed)
    params = unreplicate(trainer.program.unstack(state)[0]).params
    leaves = jax.tree_util.tree_leaves(params)
    np.save(workdir / name / "params_step1.npy", np.concatenate([np.ravel(x) for x in leaves]))
    for member in trainer.members:
        member.checkpoints.close()
    for config in configs:  # the step above wrote nothing; start the runs from scratch
        shutil.rmtree(config.workdir)
    if models == 1:
        train_and_evaluate(configs[0], configs[0].workdir)
    else:
        train_group(configs, axis)


def compare(workdir: Path) -> dict:
    import jax
    import numpy as np

    from jaxrec.run.checkpoints import load_trained
    from jaxrec.run.outputs import read_predictions

    def final(name):
        run = workdir / name / "seed_0"
        params = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(load_trained(run, "latest").params)])
        probabilities, labels = read_predictions(run)
        return params, probabilities.argmax(-1), json.loads((run / "summary.json").read_text())

    def difference(a, b):
        return {"bit_identical": bool(np.array_equal(a, b)), "max_abs": float(np.max(np.abs(a - b))),
                "relative_l2": float(np.linalg.norm(a - b) / np.linalg.norm(a))}

    reference_step = np.load(workdir / "plain" / "params_step1.npy")
    reference, reference_predicted, _ = final("plain")
    table = {}
    for name in CASES:
        if not (workdir / name / "seed_0" / "summary.json").exists():
            continue  # other_jax without --other_python
        params, predicted, summary = final(name)
        table[name] = {"after_step_1": difference(reference_step, np.load(workdir / name / "params_step1.npy")),
                       "after_training": difference(reference, params), "test_accuracy": summary["test_accuracy"],
                       "predictions_differ": float(np.mean(predicted != reference_predicted)),
                       "num_devices": summary["num_devices"], "seeds_per_program": summary["seeds_per_program"],
                       "jax": summary["versions"]["jax"]}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/reproducibility"))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # a child process's case
    parser.add_argument("--cases", help="comma-separated cases to run (plain always; default: all, other_jax only "
                        "with --other_python)")
    parser.add_argument("--other_python", help="an interpreter with jaxrec and another JAX: the other_jax case")
    args, config_flags = parser.parse_known_args()
    if args.case:
        from jaxrec.cli.commands import exit_code

        return exit_code(lambda: run_case(args.case, config_flags, args.workdir))  # bad input: one line
    everything = [name for name in CASES if name != "other_jax" or args.other_python]
    wanted = {"plain", *filter(None, args.cases.split(","))} if args.cases is not None else set(everything)
    unknown = sorted(wanted - set(CASES))
    # Before any case trains: a misspelt case, or other_jax without its interpreter, would silently not run.
    problem = (f"--cases: unknown case {', '.join(unknown)}; the cases are {', '.join(CASES)}" if unknown else
               "--cases other_jax needs --other_python (an interpreter with jaxrec and another JAX)"
               if "other_jax" in wanted and not args.other_python else
               f"--other_python {args.other_python} is not a program; pass another environment's python"
               if args.other_python and not shutil.which(args.other_python) else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    for name, (devices, pinned, _, _) in CASES.items():
        if name not in wanted or (args.workdir / name / "seed_0" / "summary.json").exists():
            continue  # rerunning continues
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}" if devices else "")
        python = args.other_python if name == "other_jax" else sys.executable
        command = [python, __file__, "--case", name, "--workdir", str(args.workdir), *config_flags]
        print(f"case {name} ...", flush=True)
        code = subprocess.run((["taskset", "-c", "0"] if pinned else []) + command, env=env).returncode
        if code:
            print(f"error: case {name} failed (exit {code}), as the line above says; fix it and run the same "
                  f"command again (finished cases are kept)", file=sys.stderr)
            return code
    table = compare(args.workdir)
    result = {"cases": table, "flags": config_flags, "started": started, "command": " ".join(sys.argv),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    from jaxrec.runtime import host
    result.update(machine=host.machine(), versions=host.versions())
    (args.workdir / "reproducibility.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| case | jax | devices | models/program | after step 1: identical, max abs diff | after training: identical, "
          "max abs diff, relative L2 | test accuracy | test predictions differing |")
    print("|---|---|---:|---:|---|---|---:|---:|")
    for name, row in table.items():
        one, end = row["after_step_1"], row["after_training"]
        print(f"| {name} | {row['jax']} | {row['num_devices']} | {row['seeds_per_program']} | "
              f"{'yes' if one['bit_identical'] else 'no'}, {one['max_abs']:.2g} | "
              f"{'yes' if end['bit_identical'] else 'no'}, {end['max_abs']:.2g}, {end['relative_l2']:.2g} | "
              f"{row['test_accuracy']:.4f} | {row['predictions_differ']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
