"""The flat modules of jaxrec before 0.2 (jaxrec.MOVED): each old name answers in one line, never
with a silent exit 0."""

import importlib
import subprocess
import sys

import pytest

from jaxrec import MOVED


@pytest.mark.parametrize("old,command", [("predict", "jaxrec predict"), ("evaluate", "jaxrec evaluate"),
                                         ("train", "jaxrec train"), ("study", "jaxrec study")])
def test_running_an_old_module_names_the_command_in_one_line(old, command):
    result = subprocess.run([sys.executable, "-m", f"jaxrec.{old}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and f"`{command} ...`" in result.stderr


def test_importing_an_old_module_names_where_it_went():
    for old, (where, _) in MOVED.items():
        with pytest.raises(ImportError, match=f"jaxrec.{old} moved to {where}"):
            importlib.import_module(f"jaxrec.{old}")
        importlib.import_module(where)  # and the new one is there


def test_the_command_line_still_runs_as_a_module():
    for module in ("jaxrec", "jaxrec.cli"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "train" in result.stdout
    evaluation = subprocess.run([sys.executable, "-m", "jaxrec.evaluation"], capture_output=True, text=True,
                                timeout=120)
    assert evaluation.returncode != 0 and "jaxrec evaluate --workdir" in evaluation.stderr
