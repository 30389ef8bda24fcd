"""notebooks/colab_tpu.ipynb executes end to end on the CPU, as CI runs it (papermill, the shipped
sample, one epoch); its Colab and Kaggle cells skip themselves here."""

import subprocess
import sys

import nbformat
import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # trains one-epoch runs in a Jupyter kernel: a run, its rerun, a 2-seed study


def test_the_colab_notebook_runs_end_to_end_on_the_cpu(tmp_path):
    executed = tmp_path / "executed.ipynb"
    result = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "colab_tpu.ipynb"),
                             str(executed), "-p", "DATASET", "cifar10_sample", "-p", "EPOCHS", "1", "-p", "STUDY_SEEDS", "0-1",
                             "-p", "WORKDIR", str(tmp_path / "work"), "--cwd", str(ROOT)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [o for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"
               for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "resuming from the checkpoint" in text  # the rerun cell continued the finished run
    assert "cat/0009.jpg: " in text  # predict classified the sample image
    assert "study in " in text and "2 seeds" in text
    pictures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pictures == 3  # curves, confusion matrix, the study's accuracy plot
    assert (tmp_path / "work" / "study" / "study.json").exists()
