"""A recipe written outside the package (`--model path/to/recipe.py`) gets what the built-ins get, is
recorded by path and hash, and a broken one is refused in one line that names the file."""

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import PERCEPTRON, ROOT, write_recipe
from jaxrec.cli import commands as cli
from jaxrec.cli.flags import config_of, parse_config
from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT
from jaxrec.errors import InputError
from jaxrec.evaluation.predict import Predictor
from jaxrec.models import config_for, create_model
from jaxrec.models.kernels import resolved_dtype
from jaxrec.models.recipes import check_images, recipe_problems
from jaxrec.run.checkpoints import load_trained
from jaxrec.studies.study import StudySpec, run_study
from jaxrec.training.loop import train_and_evaluate

KNOB = """
import dataclasses
from jaxrec.config import at_least, knob


@dataclasses.dataclass(frozen=True)
class Knobs:
    width: int = knob({}, "Hidden width.", at_least(1))
"""
RUN = dict(dataset="cifar10_sample", epochs=1, progress=False, num_devices=1)


@pytest.mark.slow  # trains
def test_a_recipe_file_trains_resumes_evaluates_and_predicts_as_a_built_in_does(tmp_path):
    recipe = write_recipe(tmp_path)
    config = config_for(str(recipe), **RUN)
    assert (config.model, config.batch_size, config.learning_rate) == (str(recipe), 50, 0.05)  # its DEFAULTS
    workdir = tmp_path / "run"
    train_and_evaluate(config, workdir)
    train_and_evaluate(config.replace(epochs=2), workdir)  # resumes the first epoch's checkpoint
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["resumed_from_step"] > 0 and summary["recipe"]["path"] == str(recipe)
    assert len(summary["recipe"]["sha256"]) == 64
    trained = load_trained(workdir)
    image = next((SAMPLE_ROOT / "test" / "cat").iterdir())
    [top] = Predictor(trained).predict([image], k=3)
    assert len(top["top_k"]) == 3

    recipe.write_text(PERCEPTRON.replace("hidden: int = 16", "hidden: int = 17"))
    with pytest.raises(InputError, match=f"^the recipe file {recipe} changed since it trained the checkpoint"):
        train_and_evaluate(config.replace(epochs=3), workdir)
    with pytest.raises(InputError, match=f"^the recipe file {recipe} changed since it trained the run in"):
        load_trained(workdir)
    recipe.rename(tmp_path / "moved.py")
    with pytest.raises(InputError, match=f"^the run in {workdir} was trained by the recipe file {recipe}, which is "
                                         f"not there any more"):
        load_trained(workdir)


@pytest.mark.slow  # trains
def test_a_seed_study_of_a_recipe_file_trains_two_seeds_in_one_program(tmp_path):
    config = config_for(str(write_recipe(tmp_path)), **RUN)
    study = run_study(StudySpec(config, seeds=(0, 1), vary=("init", "order")), tmp_path / "study",
                      seeds_per_program=2)
    assert study["seeds"] == [0, 1] and study["seeds_per_program"] == [2, 2]
    assert study["recipe"]["path"] == config.model and len(study["recipe"]["sha256"]) == 64
    # Continued after an edit of the file, the study would pool two networks: refused before seed 2 trains.
    Path(config.model).write_text(PERCEPTRON.replace("hidden: int = 16", "hidden: int = 17"))
    with pytest.raises(InputError, match=rf"^the recipe file {config.model} changed since it trained seed 0 of the "
                                         rf"study in {tmp_path / 'study'} \(sha256 "):
        run_study(StudySpec(config, seeds=(0, 1, 2), vary=("init", "order")), tmp_path / "study")
    assert not (tmp_path / "study" / "seed_2").exists()


@pytest.mark.parametrize("text,problem", [
    (PERCEPTRON.replace("def build(config", "def build(config,, "),
     r"perceptron.py, line 17: .*; fix the recipe's syntax$"),
    (PERCEPTRON.replace("def build(", "def make("), r"perceptron.py: no build\(\) function; a recipe defines"),
    (PERCEPTRON.replace("learning_rate=0.05", "learning_rte=0.05"),
     r"perceptron.py: DEFAULTS sets 'learning_rte', which jaxrec has no setting for"),
    (PERCEPTRON.replace("import flax.linen as nn", "import flax.linen as nn\nimport no_such_module"),
     r"perceptron.py, line 3: importing the recipe raised ModuleNotFoundError: No module named 'no_such_module'"),
    (PERCEPTRON + "BATCH_NORM = 'no'\n", r"perceptron.py: BATCH_NORM is 'no'; it must be True or False$"),
    (PERCEPTRON.replace("learning_rate=0.05", "learning_rate=-1"),
     r"perceptron.py: DEFAULTS: --learning_rate -1: must be > 0$"),
    (PERCEPTRON + KNOB.format("0"), r"perceptron.py: Knobs' default --width 0: must be >= 1$"),
    (PERCEPTRON + KNOB.replace('knob({}, "Hidden width.", at_least(1))', 'dataclasses.field(metadata={"help": "x"})'),
     r"perceptron.py: Knobs.width has no default; declare each knob"),
])
def test_a_recipe_file_that_does_not_load_is_refused_in_one_line_naming_it(tmp_path, text, problem):
    [refusal] = recipe_problems(Config(model=str(write_recipe(tmp_path, text))))
    assert refusal.startswith(str(tmp_path)) and "\n" not in refusal
    assert re.search(problem, refusal), refusal


def test_a_knob_whose_default_comes_from_a_factory_is_not_refused_as_having_none(tmp_path):
    factory = 'dataclasses.field(default_factory=lambda: 16, metadata={"help": "Hidden width."})'
    text = PERCEPTRON + KNOB.replace('knob({}, "Hidden width.", at_least(1))', factory)
    assert recipe_problems(Config(model=str(write_recipe(tmp_path, text)))) == []


@pytest.mark.parametrize("text,problem", [
    (PERCEPTRON.replace("nn.Dense(self.num_classes)(x)", "nn.Dense(7)(x)"),
     r"perceptron.py: the network gives logits of shape \[2, 7\] for 2 images of 10 classes; it must give "
     r"\[batch, num_classes\]"),
    (PERCEPTRON.replace("x.reshape((x.shape[0], -1))", "x.reshape((x.shape[0], 5))"),
     r"perceptron.py, line 13: the network failed on 32x32x3 images: TypeError"),
])
def test_a_recipe_whose_network_does_not_fit_the_data_is_refused_in_one_line(tmp_path, text, problem):
    config = Config(model=str(write_recipe(tmp_path, text)))
    with pytest.raises(InputError, match=problem) as refused:
        check_images(config, (32, 32, 3), 10, "--dataset cifar10_sample")
    assert "\n" not in str(refused.value)
    with pytest.raises(InputError, match=problem):  # before anything trains
        train_and_evaluate(config.replace(**RUN), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_batchnorm_bias_learning_rate_for_a_recipe_without_batchnorm_is_refused(tmp_path):
    plain = Config(model=str(write_recipe(tmp_path)), norm_bias_lr_scale=4.0)
    with pytest.raises(InputError, match=r"^--norm_bias_lr_scale 4.0 with --model .*perceptron.py: its network has "
                                         r"no BatchNorm bias"):
        check_images(plain, (32, 32, 3), 10, "--dataset cifar10_sample")
    with_norm = PERCEPTRON.replace("x = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))",
                                   "x = nn.relu(nn.BatchNorm(use_running_average=not train)("
                                   "nn.Dense(self.hidden)(x.reshape((x.shape[0], -1)))))")
    check_images(plain.replace(model=str(write_recipe(tmp_path, with_norm, "normed.py"))), (32, 32, 3), 10, "here")


def test_what_a_recipe_declares_its_network_has_no_use_for_is_refused_when_set_and_reset_when_defaulted(tmp_path):
    plain = str(write_recipe(tmp_path))
    declared = str(write_recipe(tmp_path, PERCEPTRON + "FLOAT32 = True\nBATCH_NORM = False\n", "declared.py"))
    reads_norm = str(write_recipe(tmp_path, PERCEPTRON + "READS_NORM = True\n", "reads_norm.py"))
    assert (resolved_dtype(Config(model=plain), "gpu"), resolved_dtype(Config(model=declared), "gpu")) == \
        ("bfloat16", "float32")
    assert recipe_problems(Config(model=plain, dtype="bfloat16", norm_bias_lr_scale=4.0)) == []
    assert recipe_problems(Config(model=declared, dtype="bfloat16", norm_bias_lr_scale=4.0)) == [
        f"--dtype bfloat16 with --model {declared}: the {declared} computes in float32; drop --dtype (bfloat16 is "
        f"for airbench94, the ResNets, and recipes that read it)",
        f"--norm_bias_lr_scale with --model {declared}: the model has no BatchNorm; drop it"]
    assert recipe_problems(Config(model=reads_norm, norm="batch")) == []
    [refusal] = recipe_problems(Config(model=plain, norm="batch"))
    assert refusal.startswith(f"--norm batch with --model {plain}: only the cnn")
    # Defaults from another recipe (here airbench94's) that the network has no use for go back to Config's.
    airbench = config_for("airbench94")
    for model, scale in ((declared, 1.0), (plain, airbench.norm_bias_lr_scale)):
        parsed = parse_config(["--model", model], defaults=airbench.replace(knobs=()))
        assert parsed.norm_bias_lr_scale == scale and recipe_problems(parsed) == []


def test_the_command_line_refuses_a_broken_or_missing_recipe_in_one_line(tmp_path, capsys):
    broken = write_recipe(tmp_path, PERCEPTRON.replace("def build(", "def make("))
    for path, says in ((broken, f"{broken}: no build() function"),
                       (tmp_path / "missing.py", "cannot read the recipe file")):
        with pytest.raises(SystemExit) as exited:
            cli.main(["train", "--model", str(path), "--dataset", "cifar10_sample"])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and says in err and err.count("\n") == 1, err


def test_a_recipe_file_is_recorded_by_its_absolute_path_and_named_by_its_stem(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = Config(model="perceptron.py")
    assert config.model == str(recipe) and config.model_tag == "perceptron"
    assert config.default_workdir().startswith("runs/perceptron_")
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(recipe, copy / "perceptron.py")
    assert Config(model=str(copy / "perceptron.py")) != config  # another file is another recipe


KNOBBED = PERCEPTRON.replace("import flax.linen as nn", '''import dataclasses

import flax.linen as nn

from jaxrec.config import at_least, knob
from jaxrec.models import recipe_knobs''').replace("class Perceptron(", '''@dataclasses.dataclass(frozen=True)
class Knobs:
    hidden: int = knob(16, "Width of the hidden layer.", at_least(1))


class Perceptron(''').replace("return Perceptron(num_classes)",
                              "return Perceptron(num_classes, recipe_knobs(config).hidden)")


@pytest.mark.slow  # trains
def test_a_recipe_files_own_knobs_are_flags_recorded_with_the_run_and_checked(tmp_path, capsys):
    recipe = write_recipe(tmp_path, KNOBBED)
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", str(recipe), "--help"])
    out = capsys.readouterr().out
    assert "--hidden HIDDEN" in out and "Width of the hidden layer. (default: 16)" in out
    args = cli.build_parser(cli.model_defaults(["train", "--model", str(recipe)])).parse_args(
        ["train", "--model", str(recipe), "--hidden", "24"])
    config = config_of(args)
    assert config.knobs == (("hidden", 24),) and config == config_for(str(recipe), hidden=24)
    assert create_model(config, 10).hidden == 24 and create_model(config.replace(knobs=()), 10).hidden == 16
    # An experiment script (`jaxrec train` with defaults of its own) takes them as well.
    assert parse_config(["--model", str(recipe), "--hidden", "24"], None, Config(model="rnn")).knobs == config.knobs
    [too_small] = recipe_problems(config.replace(knobs=(("hidden", 0),)))
    assert too_small == "--hidden 0: must be >= 1"
    [unknown] = recipe_problems(config.replace(knobs=(("depth", 2),)))
    assert unknown == "--model perceptron.py has no knob depth; its knobs are hidden"
    workdir = tmp_path / "run"
    train_and_evaluate(config.replace(**RUN), workdir)
    assert json.loads((workdir / "config.json").read_text())["knobs"] == [["hidden", 24]]
    with pytest.raises(InputError, match=r"another config: knobs \(checkpoint: \[\['hidden', 24\]\], now: "
                                         r"\[\['hidden', 16\]\]\)"):
        train_and_evaluate(config.replace(**{**RUN, "epochs": 2}, knobs=(("hidden", 16),)), workdir)
    assert load_trained(workdir).config.knobs == (("hidden", 24),)


def test_the_vit_example_is_the_documented_size_and_its_knobs_shrink_or_refuse_it():
    import jax

    vit = str(ROOT / "experiments" / "recipes" / "vit.py")
    images = jax.numpy.zeros((2, 32, 32, 3))

    def params(**knobs) -> int:
        model = create_model(config_for(vit, **knobs), 10)
        return sum(x.size for x in jax.tree_util.tree_leaves(jax.eval_shape(model.init, jax.random.key(0), images)))

    assert params() == 311_146  # results/vit and docs/recipes.md name this size
    assert params(width=32, depth=1, heads=2) < 20_000
    with pytest.raises(InputError, match=r"vit.py, line \d+: the network failed on 32x32x3 images: ValueError: "
                                         r"--width 100 is not a multiple of --heads 3$"):
        check_images(config_for(vit, width=100), (32, 32, 3), 10, "--dataset cifar10_sample")
