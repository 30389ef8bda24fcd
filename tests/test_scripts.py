"""Scripts of experiments/ refuse bad input in one line (error: ..., exit 2) before doing any work."""

import sys

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
