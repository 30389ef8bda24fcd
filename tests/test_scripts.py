"""Scripts of experiments/ refuse bad input in one line (error: ..., exit 2) before doing any work."""

import sys

import pytest

from helpers import load_script


def test_reproducibility_refuses_an_unknown_case_and_other_jax_without_its_python(tmp_path, monkeypatch, capsys):
    script = load_script("reproducibility")
    for argv, says in ((["--cases", "again,foo"], "unknown case foo; the cases are plain, again,"),
                       (["--cases", "other_jax"], "other_jax needs --other_python"),
                       (["--other_python", str(tmp_path / "nope")], "is not a program")):
        monkeypatch.setattr(sys, "argv", ["reproducibility.py", "--workdir", str(tmp_path / "w"), *argv])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()



@pytest.mark.slow  # trains two one-epoch runs
def test_a_reproducibility_case_trains_its_first_step_and_a_whole_run(tmp_path):
    import numpy as np

    script = load_script("reproducibility")
    script.run_case("loop_K2", ["--dataset", "cifar10_sample", "--epochs", "1", "--batch_size", "64"], tmp_path)
    assert np.load(tmp_path / "loop_K2" / "params_step1.npy").size > 0
    assert [(tmp_path / "loop_K2" / f"seed_{seed}" / "summary.json").exists() for seed in (0, 1)] == [True, True]

def test_a_reproducibility_case_refused_in_its_process_ends_in_two_lines_not_tracebacks(tmp_path):
    import subprocess

    from helpers import ROOT

    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "reproducibility.py"), "--workdir",
                           str(tmp_path / "w"), "--cases", "plain", "--dataset", str(tmp_path / "no_data")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-2:] == [
        f"error: image folder {tmp_path / 'no_data'} does not exist; pass a folder laid out "
        f"<root>/<split>/<class>/<image> (or <root>/<class>/<image>), a TFDS name, or cifar10_sample",
        "error: case plain failed (exit 2), as the line above says; fix it and run the same command again "
        "(finished cases are kept)"]


def test_report_refuses_a_study_and_a_folder_without_a_finished_run(tmp_path, monkeypatch, capsys):
    script = load_script("report")
    (tmp_path / "study" / "seed_3").mkdir(parents=True)
    (tmp_path / "study" / "study_spec.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for folder, says in (("study", f"is a seed study, not a run; pass its runs ({tmp_path / 'study' / 'seed_3'} ...)"),
                         ("nope", "does not exist"), ("empty", "holds no finished run (no summary.json)")):
        monkeypatch.setattr(sys, "argv", ["report.py", str(tmp_path / folder)])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / folder} ") and says in err and err.count("\n") == 1


def test_report_tells_a_run_cut_short_by_max_steps():
    script = load_script("report")

    def summary(steps, max_steps, epochs=2):  # 400 training images in batches of 128: 3 steps per epoch
        return {"steps": steps, "dataset": {"train_examples": 400},
                "config": {"epochs": epochs, "batch_size": 128, "max_steps": max_steps}}

    assert script.stopped_early(summary(4, 4)) and script.stopped_early(summary(2, 2, epochs=1))
    assert not script.stopped_early(summary(6, None)) and not script.stopped_early(summary(6, 6))
    assert not script.stopped_early(summary(6, 10))


def test_compare_runs_refuses_a_missing_folder_and_a_study_in_one_line(tmp_path, monkeypatch, capsys):
    script = load_script("compare_runs")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"epoch": 1, "step": 3, "train_loss": 2.3}\n')
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study_spec.json").write_text("{}")
    for folder, says in (("nope", "does not exist"), ("study", "is a seed study, not a run"),
                         ("run/metrics.jsonl", "is a file")):
        monkeypatch.setattr(sys, "argv", ["compare_runs.py", str(tmp_path / "run"), str(tmp_path / folder)])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / folder} ") and says in err and err.count("\n") == 1
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", str(tmp_path / "run"), str(tmp_path / "run")])
    assert script.main() == 0 and "1 vs 1 epochs; bit-identical" in capsys.readouterr().out


def test_worker_memory_has_a_help_a_usage_error_and_a_workdir_flag(tmp_path, monkeypatch, capsys):
    import io

    import pytest

    script = load_script("worker_memory")
    for argv, code in ((["--help"], 0), ([], 2)):
        monkeypatch.setattr(sys, "argv", ["worker_memory.py", *argv])
        with pytest.raises(SystemExit) as stop:
            script.main()
        assert stop.value.code == code
    assert "--workdir" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["worker_memory.py", "data", "0"])
    assert script.main() == 2 and capsys.readouterr().err == "error: WORKERS must be >= 1, got 0\n"
    started, exits = [], iter((0, 2))

    class Run:  # a training run that has already ended, well then refused: nothing trains
        def __init__(self, command, **_):
            started.append(command)
            self.pid, self.returncode, self.stdout = 0, next(exits), io.StringIO("done\n")

        def poll(self):
            return self.returncode

    monkeypatch.setattr(script.subprocess, "Popen", Run)
    monkeypatch.setattr(sys, "argv", ["worker_memory.py", "data", "3", "--workdir", str(tmp_path / "w")])
    assert script.main() == 0
    assert script.main() == 2  # a refused run is not a measurement: its exit code is the script's
    command = started[0]
    assert command[command.index("--workdir") + 1] == str(tmp_path / "w") and "3" in command


def test_airbench_report_has_a_help_refuses_a_folder_without_runs_and_counts_steps_from_them(tmp_path, capsys):
    import json

    import pytest

    script = load_script("airbench_report")
    with pytest.raises(SystemExit) as stop:
        script.main(["--help"])
    assert stop.value.code == 0 and "results/airbench94" in capsys.readouterr().out
    for folder, says in ((tmp_path / "nope", "does not exist"), (tmp_path, "holds no finished run")):
        assert script.main([str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {folder} {says}") and err.count("\n") == 1
    for seed, steps in ((0, 50), (1, 50)):
        (tmp_path / f"peer_epochs2_seed{seed}.json").write_text(json.dumps(
            {"seed": seed, "tta_test_accuracy": 0.8, "test_accuracy": 0.79, "steps": steps, "train_seconds": 9}))
    assert script.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### Short schedule: --epochs 2 (50 steps)\n" in out and "### Full schedule: 9.9 epochs\n" in out
    (tmp_path / "peer_epochs2_seed2.json").write_text(json.dumps(
        {"seed": 2, "tta_test_accuracy": 0.8, "test_accuracy": 0.79, "steps": 60, "train_seconds": 9}))
    assert script.main([str(tmp_path)]) == 0 and "--epochs 2 (steps differ: 50, 60)" in capsys.readouterr().out


def test_upscaled_folder_refuses_a_source_without_images(tmp_path, monkeypatch, capsys):
    script = load_script("upscaled_folder")
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    for source, says in (("nope", "does not exist"), ("empty", "holds no images laid out <split>/<class>/<image>")):
        monkeypatch.setattr(sys, "argv", ["upscaled_folder.py", str(tmp_path / source), str(tmp_path / "out")])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / source} {says}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_interleaved_ab_refuses_an_unknown_setting_naming_the_valid_ones(monkeypatch, capsys):
    script = load_script("interleaved_ab")
    for argv, says in ((["foo=1", "devices=2"], "variant foo=1: unknown setting foo; the settings are devices, model, "
                                                 "the kernel knobs (image_conv,"),
                       (["conv_grad"], "variant conv_grad: conv_grad has no value; write it KNOB=VALUE"),
                       (["devices=two"], "variant devices=two: a value is not of its setting's type"),
                       (["augment=maybe"], "variant augment=maybe: a value is not of its setting's type"),
                       (["--windows", "0", "devices=1"], "--windows and --calls must be >= 1, got 0 and 4")):
        monkeypatch.setattr(sys, "argv", ["interleaved_ab.py", *argv])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}") and err.count("\n") == 1


def test_airbench_port_refuses_a_missing_peer_in_one_line(tmp_path, capsys):
    script = load_script("airbench_port")
    assert script.main(["--peer", str(tmp_path / "nope.py"), "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --peer {tmp_path / 'nope.py'} is not a file; pass the path of "
                                       f"peer_airbench94_cpu.py\n")


def test_layer_timing_refuses_a_batch_below_one(monkeypatch, capsys):
    script = load_script("layer_timing")
    monkeypatch.setattr(sys, "argv", ["layer_timing.py", "--batch", "0"])
    assert script.main() == 2 and capsys.readouterr().err == "error: --batch must be >= 1, got 0\n"


def test_seed_studies_script_prints_the_error_line_of_a_study_that_refuses(tmp_path):
    import os
    import subprocess

    from helpers import ROOT

    bin_dir = tmp_path / "bin"  # a `python` that refuses the study as jaxrec does: nothing trains
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/bin/sh\necho "error: --seeds 0-9 drops trained seeds" >&2\nexit 2\n')
    (bin_dir / "python").chmod(0o755)
    done = subprocess.run(["bash", str(ROOT / "experiments" / "seed_studies_cifar10.sh"), "DATA", str(tmp_path / "r")],
                          capture_output=True, text=True, env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"),
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr == "study_cifar10_all: error: --seeds 0-9 drops trained seeds\n"


def test_report_names_each_run_s_augmentation_whichever_flags_set_it():
    from jaxrec.config import Config
    from jaxrec.models import config_for

    script = load_script("report")
    assert script.augmentation(Config().to_dict()) == "none"
    assert script.augmentation(Config(augment=True).to_dict()) == "crop + flip"
    assert script.augmentation(config_for("airbench94").to_dict()) == "translate 2, flip alternating"
