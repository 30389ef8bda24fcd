"""A workdir: one training run at a time, never someone else's folder or a study's, writable, and a run started
over (--resume=false) keeps the previous one."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import SMALL_FLAGS, script_command
from jaxrec.errors import InputError
from jaxrec.run.checkpoints import RunCheckpointer
from jaxrec.run.workdir import LOCK_FILE, STUDY_SPEC_FILE, check_workdir, claim, move_previous_run
from jaxrec.studies.study import StudySpec, run_study
from jaxrec.training.loop import train_and_evaluate


def test_a_claimed_workdir_is_refused_naming_the_holder_and_free_again_after(tmp_path):
    with claim(tmp_path):
        with pytest.raises(InputError, match=rf"in use by another training run \(pid {os.getpid()}\)"):
            with claim(tmp_path):
                pass
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())  # the holder's lock is left alone
        with pytest.raises(InputError, match="in use by another training run"):  # so a third run is refused too
            with claim(tmp_path):
                pass
    with claim(tmp_path):  # released
        pass


def _wait_for_pid(lock, pid, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if lock.exists() and lock.read_text().strip() == str(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} never claimed {lock}")


def test_a_second_training_run_in_a_workdir_is_refused_and_the_lock_dies_with_the_first(small_config, tmp_path):
    first = subprocess.Popen(script_command("jaxrec", "train", "--dataset", "cifar10_sample", "--epochs", "50",
                                            "--progress", "false", "--workdir", tmp_path, *SMALL_FLAGS),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_pid(tmp_path / LOCK_FILE, first.pid)
        with pytest.raises(InputError, match=rf"in use by another training run \(pid {first.pid}\)"):
            train_and_evaluate(small_config, tmp_path)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with claim(tmp_path):  # the OS released the dead run's lock
        pass


def test_someone_elses_folder_is_never_written_unless_forced(tmp_path, small_config):
    (tmp_path / "config.json").write_text('{"name": "my own experiment"}')
    with pytest.raises(InputError, match="holds files that are not a jaxrec run.*--force_workdir"):
        train_and_evaluate(small_config, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"name": "my own experiment"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert check_workdir(tmp_path, force=True) == tmp_path
    small_config.save(tmp_path / "config.json")
    assert check_workdir(tmp_path) == tmp_path  # a jaxrec run's folder


def test_a_run_and_a_study_never_share_a_workdir(tmp_path, small_config):
    study, run = tmp_path / "study", tmp_path / "run"
    study.mkdir()
    (study / STUDY_SPEC_FILE).write_text("{}")
    with pytest.raises(InputError, match=f"^--workdir {study} holds a jaxrec study, and a run is written into a "
                                         f"folder of its own; choose another --workdir$"):
        train_and_evaluate(small_config, study)
    assert sorted(p.name for p in study.iterdir()) == [STUDY_SPEC_FILE]
    run.mkdir()
    small_config.save(run / "config.json")
    with pytest.raises(InputError, match=f"^--workdir {run} holds a jaxrec run, and a study is written"):
        run_study(StudySpec(small_config, seeds=(0, 1), vary=("init",)), run)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    assert check_workdir(run, force=True, kind="study") == run


def test_a_run_stopped_during_start_up_continues_with_the_same_command(tmp_path, small_config):
    """What a run makes before its config.json (the lock and an empty checkpoints folder, here made by
    the same calls the loop makes) is jaxrec's: the rerun it asked for goes ahead. A checkpoints folder
    holding files with no config.json beside it is not known to be jaxrec's."""
    workdir = tmp_path / "run"
    with claim(workdir):
        RunCheckpointer(workdir, small_config)
    assert sorted(p.name for p in workdir.iterdir()) == [".lock", "checkpoints"]
    train_and_evaluate(small_config, workdir)
    assert json.loads((workdir / "summary.json").read_text())["test_accuracy"] is not None
    other = tmp_path / "other"
    (other / "checkpoints" / "7").mkdir(parents=True)
    (other / "checkpoints" / "7" / "model.pt").write_bytes(b"not ours")
    with pytest.raises(InputError, match="holds files that are not a jaxrec run"):
        check_workdir(other)


def test_a_file_or_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder; choose another --workdir"):
        check_workdir(tmp_path / "a_file")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes into read-only folders, but not into sysfs's top folder
        if not Path("/sys/kernel").is_dir():
            pytest.skip("running as root without a sysfs: no folder here is unwritable to root")
        locked = Path("/sys")
    with pytest.raises(InputError, match=f"cannot write to --workdir {locked}/run: permission denied"):
        check_workdir(locked / "run")


def test_starting_over_moves_every_file_of_the_previous_run_aside(tmp_path):
    (tmp_path / "checkpoints" / "12").mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "summary.json", "eval.json", LOCK_FILE):
        (tmp_path / name).write_text(name)
    aside = move_previous_run(tmp_path)
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoints", "config.json", "eval.json", "metrics.jsonl",
                                                       "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, aside.name]
    assert move_previous_run(tmp_path) is None  # nothing left to move
    (tmp_path / "config.json").write_text("again")
    assert move_previous_run(tmp_path) != aside and aside.is_dir()  # a second start-over keeps the first


@pytest.mark.slow  # trains
def test_a_refused_start_over_leaves_the_previous_run_in_place(tmp_path, small_config):
    workdir = tmp_path / "run"
    train_and_evaluate(small_config, workdir)
    before = sorted(p.name for p in workdir.iterdir())
    with pytest.raises(InputError, match="fewer than one batch of 800"):  # known only once the data is read
        train_and_evaluate(small_config.replace(resume=False, batch_size=800), workdir)
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing moved aside
    train_and_evaluate(small_config.replace(resume=False), workdir)
    (aside,) = workdir.glob("replaced-*")
    assert (aside / "summary.json").exists() and (workdir / "summary.json").exists()


def test_a_folder_left_holding_only_the_runs_it_replaced_is_still_a_run_s(tmp_path):
    (tmp_path / "replaced-20261207-120000" / "checkpoints").mkdir(parents=True)
    (tmp_path / LOCK_FILE).write_text("1\n")
    assert check_workdir(tmp_path) == tmp_path
    with pytest.raises(InputError, match="holds a jaxrec run"):
        check_workdir(tmp_path, kind="study")


def test_cli_refusal_is_one_line_with_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run(script_command("jaxrec", "train", "--dataset", "cifar10_sample", "--workdir", tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds files that are not a jaxrec run" in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_full_disk_is_one_line_wherever_it_strikes_and_other_os_errors_stay_bugs(capsys):
    import errno

    from jaxrec.cli.commands import exit_code

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    assert exit_code(full) == 2
    assert capsys.readouterr().err.startswith("error: no space left on the device; free space (or fix the permissions)")

    def missing():
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):
        exit_code(missing)


def test_a_run_refused_before_writing_leaves_no_workdir_it_made_and_keeps_one_it_was_given(tmp_path, small_config):
    (tmp_path / "given").mkdir()
    for name in ("made/with/parents", "given"):
        with pytest.raises(InputError, match="fewer than one batch of 800"):  # known once the data is read
            train_and_evaluate(small_config.replace(batch_size=800), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given"] and not any((tmp_path / "given").iterdir())
