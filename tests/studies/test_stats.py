"""Seed-study statistics against scipy and hand-worked cases."""

import json
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from helpers import load_script
from jaxrec.cli import main
from jaxrec.config import Config
from jaxrec.studies import stats
ACCURACIES = [0.7179, 0.7205, 0.7223, 0.7150, 0.7262, 0.7191, 0.7240, 0.7168]


def test_describe_matches_numpy_and_scipy():
    d = stats.describe(ACCURACIES)
    values = np.asarray(ACCURACIES)
    assert d["n"] == 8 and d["mean"] == pytest.approx(values.mean()) and d["median"] == pytest.approx(np.median(values))
    assert d["std"] == pytest.approx(values.std(ddof=1)) and d["sem"] == pytest.approx(scipy_stats.sem(values))
    low, high = scipy_stats.t.interval(0.95, 7, loc=values.mean(), scale=scipy_stats.sem(values))
    assert d["ci95"] == pytest.approx([low, high])
    assert (d["min"], d["max"], d["range"]) == pytest.approx((0.7150, 0.7262, 0.0112))
    assert d["values"] == ACCURACIES



def test_an_interval_stays_within_the_metric_s_range():
    near_one = [1.0, 1.0, 0.97]  # the t-interval of their mean passes 1
    assert stats.describe(near_one)["ci95"][1] > 1
    bounded = stats.describe(near_one, bounds=(0.0, 1.0))
    assert bounded["ci95"][1] == 1.0 and bounded["ci95"][0] == stats.describe(near_one)["ci95"][0]

def test_bootstrap_interval_is_seeded_and_agrees_with_scipy():
    first, again = stats.bootstrap_mean_interval(ACCURACIES, seed=3), stats.bootstrap_mean_interval(ACCURACIES, seed=3)
    assert first == again and first != stats.bootstrap_mean_interval(ACCURACIES, seed=4)
    reference = scipy_stats.bootstrap((np.asarray(ACCURACIES),), np.mean, method="percentile", n_resamples=10_000,
                                      random_state=np.random.default_rng(0)).confidence_interval
    assert first == pytest.approx([reference.low, reference.high], abs=5e-4)
    assert first[0] < np.mean(ACCURACIES) < first[1]


def test_welch_matches_scipy():
    a, b = ACCURACIES, [0.7301, 0.7352, 0.7276, 0.7338, 0.7290]
    result = stats.welch(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert result["p_value"] == pytest.approx(reference.pvalue) and result["dof"] == pytest.approx(reference.df)
    interval = reference.confidence_interval(0.95)
    assert result["ci95"] == pytest.approx([interval.low, interval.high])
    assert result["difference"] == pytest.approx(np.mean(a) - np.mean(b))


def test_p_a_beats_b_on_a_hand_case():
    # A's 3 beats 1 and 2, ties the 3 (half), loses to nothing: (2 + 0.5) / 3; A's 1 beats nothing, ties the 1.
    assert stats.prob_a_beats_b([3.0], [1.0, 2.0, 3.0]) == pytest.approx(2.5 / 3)
    assert stats.prob_a_beats_b([3.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx((2.5 + 0.5) / 6)
    assert stats.prob_a_beats_b([1.0], [2.0]) == 0.0 and stats.prob_a_beats_b([2.0], [1.0]) == 1.0


def test_compare_gives_a_verdict_and_the_seeds_a_difference_needs():
    better = stats.compare([0.74, 0.75, 0.745, 0.748, 0.742], [0.71, 0.72, 0.715, 0.718, 0.712])
    assert better["verdict"].startswith("A is better than B") and better["p_a_beats_b"] == 1.0
    low, high = better["p_a_beats_b_bootstrap_ci95"]
    assert 0 <= low <= high <= 1
    unclear = stats.compare(ACCURACIES[:4], ACCURACIES[4:])
    assert unclear["verdict"].startswith("No detectable difference at n=4 vs 4 seeds")
    needed = unclear["seeds_per_arm_for_80pct_power"]
    assert needed > 4 and f"about {needed} seeds per arm" in unclear["verdict"]
    # Any power calculator's two-sample t-test (G*Power, R's power.t.test): an effect of 1 std needs 17 per arm for
    # 80% power at alpha 0.05 (the normal approximation's 16 falls short), 0.5 std needs 64.
    root2 = 2**0.5  # two values root 2 apart: sample std 1
    assert stats.seeds_needed([0.0, root2], [1.0, 1.0 + root2]) == 17
    assert stats.seeds_needed([0.0, root2], [0.5, 0.5 + root2]) == 64


def test_the_std_interval_matches_the_chi_square_table():
    # 9 degrees of freedom: chi-square quantiles 2.700 (2.5%) and 19.023 (97.5%) from any printed table
    low, high = stats.describe([float(v) for v in range(10)])["std_ci95"]
    std = np.std(np.arange(10.0), ddof=1)
    assert low == pytest.approx(std * (9 / 19.023) ** 0.5, rel=1e-4)
    assert high == pytest.approx(std * (9 / 2.700) ** 0.5, rel=1e-4)
    one = stats.describe([1.0])
    assert one["std"] is None and one["std_ci95"] is None and one["ci95"] is None and "1 seed" in one["note"]


def test_identical_seeds_give_no_interval_and_say_so():
    """Zero observed spread is no certainty: no zero-width interval, no p = 0, a note instead."""
    d = stats.describe([0.7, 0.7, 0.7])
    assert d["std"] == 0 and d["ci95"] is None and d["bootstrap_ci95"] is None and d["std_ci95"] is None
    assert d["note"] == "no spread observed: 3 seeds identical"
    assert stats.describe([0.7, 0.71])["note"] is None
    result = stats.compare([0.70, 0.70, 0.70], [0.74, 0.74])
    assert result["p_value"] is None and result["ci95"] is None and result["p_a_beats_b_bootstrap_ci95"] is None
    assert result["seeds_per_arm_for_80pct_power"] is None
    assert result["verdict"].startswith("No test at n=3 vs 2 seeds: no spread observed")
    assert "Welch" not in result["verdict"]
    # One arm with spread is still a test: Welch's uses the other arm's spread.
    assert stats.compare([0.70, 0.70, 0.70], [0.74, 0.75, 0.73])["p_value"] > 0


@pytest.mark.parametrize("a,b,says", [([0.7], [0.7, 0.71], "A has 1 seed"), ([0.7, 0.71], [0.8], "B has 1 seed"),
                                      ([0.7], [0.8], "A has 1 seed and B has 1 seed")])
def test_a_study_of_one_seed_is_no_test(a, b, says):
    result = stats.welch(a, b)
    assert result["p_value"] is None and says in result["note"]
    assert stats.variance_ratio(a, b) == {"ratio": None, "p": None}


def test_compare_studies_prints_valid_json_without_nan(tmp_path, capsys, monkeypatch):
    script = load_script("compare_studies")
    one, two = _study(tmp_path, "one", ["init"], [0.7]), _study(tmp_path, "two", ["init"], [0.7, 0.72])
    monkeypatch.setattr(sys, "argv", ["compare_studies.py", str(one), str(two), "--json"])
    assert script.main() == 0
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert result["p_value"] is None and "A has 1 seed" in result["verdict"]


def _study(tmp_path, name, vary, values, dataset="cifar10", eval_examples=10000):
    """A study workdir holding the study.json `jaxrec study` writes, for these test accuracies."""
    workdir = tmp_path / name
    workdir.mkdir()
    payload = {"vary": vary, "metrics": {"test_accuracy": stats.describe(values)},
               "disagreement": stats.describe([0.2, 0.3]), "ensemble_accuracy": max(values) + 0.01,
               "config": {**Config().to_dict(), "dataset": dataset},
               "dataset": {"location": dataset, "class_names": list("abcdefghij"), "image_shape": [32, 32, 3],
                           "train_examples": 50000, "eval_examples": eval_examples}}
    (workdir / "study.json").write_text(json.dumps(payload))
    return workdir


def test_variance_by_source_rows_come_from_each_study(tmp_path, capsys, monkeypatch):
    script = load_script("variance_by_source")
    rng = np.random.default_rng(0)
    init, everything = rng.normal(0.72, 0.002, 5), rng.normal(0.72, 0.006, 5)
    workdirs = [_study(tmp_path, "init", ["init"], init), _study(tmp_path, "all", ["init", "order", "augment"], everything)]
    monkeypatch.setattr(sys, "argv", ["variance_by_source.py", *map(str, workdirs), "--plot", str(tmp_path / "s.png")])
    assert script.main() == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| init") or
            line.startswith("| all")]
    (init_row,) = [r for r in rows if r[0] == "| init"]
    assert float(init_row[3]) == pytest.approx(100 * np.mean(init), abs=0.005)
    assert float(init_row[4].split()[0]) == pytest.approx(100 * np.std(init, ddof=1), abs=0.005)
    share, p = init_row[5].split()
    assert float(share) == pytest.approx(np.var(init, ddof=1) / np.var(everything, ddof=1), abs=0.005)
    assert float(p.strip("(p=)")) == pytest.approx(stats.variance_ratio(init, everything)["p"], rel=0.01)
    assert (tmp_path / "s.png").stat().st_size > 0
    monkeypatch.setattr(sys, "argv", ["variance_by_source.py", str(tmp_path / "nowhere")])
    assert script.main() == 2 and "does not exist" in capsys.readouterr().err


def test_variance_ratio_is_a_two_sided_f_test():
    rng = np.random.default_rng(1)
    narrow, wide = rng.normal(0, 1, 8), rng.normal(0, 10, 8)
    result = stats.variance_ratio(narrow, wide)
    assert result["ratio"] == pytest.approx(np.var(narrow, ddof=1) / np.var(wide, ddof=1))
    assert result["p"] == pytest.approx(stats.variance_ratio(wide, narrow)["p"])  # two-sided: symmetric
    assert result["p"] < 0.05 and stats.variance_ratio(narrow, narrow)["p"] == pytest.approx(1.0)
    # Under equal variances, p < 0.05 about 5% of the time.
    p_values = [stats.variance_ratio(rng.normal(size=5), rng.normal(size=5))["p"] for _ in range(4000)]
    assert np.mean(np.asarray(p_values) < 0.05) == pytest.approx(0.05, abs=0.012)


def test_compare_studies_leads_with_a_warning_when_the_data_differ(tmp_path, capsys, monkeypatch):
    script = load_script("compare_studies")
    a = _study(tmp_path, "a", ["init"], [0.70, 0.71, 0.72])
    b = _study(tmp_path, "b", ["init"], [0.74, 0.75, 0.73], dataset="/data/photos", eval_examples=800)
    monkeypatch.setattr(sys, "argv", ["compare_studies.py", str(a), str(b), "--json"])
    assert script.main() == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: A and B were scored on different data: dataset (A: 'cifar10', B: "
                                   "'/data/photos'); dataset eval_examples (A: 10000, B: 800).")
    assert json.loads(captured.out)["warnings"] == ["dataset (A: 'cifar10', B: '/data/photos')",
                                                    "dataset eval_examples (A: 10000, B: 800)"]
    same = _study(tmp_path, "same", ["init"], [0.74, 0.75, 0.73])
    monkeypatch.setattr(sys, "argv", ["compare_studies.py", str(a), str(same)])
    assert script.main() == 0 and capsys.readouterr().err == ""


def test_jaxrec_compare_gives_the_verdict_and_study_refuses_a_missing_comparison_before_training(tmp_path, capsys):
    a = _study(tmp_path, "a", ["init"], [0.70, 0.71, 0.72, 0.705])
    b = _study(tmp_path, "b", ["init"], [0.74, 0.75, 0.73, 0.745])
    assert main(["compare", str(a), str(b)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"test_accuracy: A = {a} (n=4), B = {b} (n=4)",
                                                    stats.compare([0.70, 0.71, 0.72, 0.705],
                                                                  [0.74, 0.75, 0.73, 0.745])["verdict"]]
    assert main(["study", "--dataset", "cifar10_sample", "--seeds", "0-1", "--workdir", str(tmp_path / "s"),
                 "--compare_with", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'nowhere' / 'study.json'} does not exist; run the study "
                                       f"first (jaxrec study ... --workdir {tmp_path / 'nowhere'})\n")
    assert not (tmp_path / "s").exists()


def test_jaxrec_compare_refuses_a_training_run_as_not_a_study(tmp_path, capsys):
    a, run = _study(tmp_path, "a", ["init"], [0.70, 0.71]), tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(Config().to_dict()))
    assert main(["compare", str(a), str(run)]) == 2
    assert capsys.readouterr().err == (f"error: {run} holds a training run, not a seed study; pass the workdir of a "
                                       f"seed study (the folder where jaxrec study wrote study.json)\n")


def test_compare_studies_names_a_damaged_study_file(tmp_path, capsys, monkeypatch):
    script = load_script("compare_studies")
    a, b = _study(tmp_path, "a", ["init"], [0.70, 0.71]), tmp_path / "b"
    b.mkdir()
    (b / "study.json").write_text('{"metrics": {"test_accuracy": ')
    monkeypatch.setattr(sys, "argv", ["compare_studies.py", str(a), str(b)])
    assert script.main() == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {b / 'study.json'} is damaged (JSONDecodeError") and err.count("\n") == 1


def test_a_loss_is_compared_with_its_own_values_and_lower_as_better(tmp_path):
    from jaxrec.studies.compare import compare_studies

    low, high = [2.20, 2.21, 2.22, 2.205, 2.215], [2.29, 2.30, 2.31, 2.295, 2.305]
    a, b = _study(tmp_path, "a", ["init"], [0.7] * 5), _study(tmp_path, "b", ["init"], [0.7] * 5)
    for workdir, losses in ((a, low), (b, high)):
        study = json.loads((workdir / "study.json").read_text())
        study["metrics"]["test_loss"] = stats.describe(losses)
        (workdir / "study.json").write_text(json.dumps(study))
    result = compare_studies(a, b, "test_loss")
    assert result["mean_a"] == pytest.approx(np.mean(low)) and result["mean_b"] == pytest.approx(np.mean(high))
    assert result["difference"] == pytest.approx(np.mean(low) - np.mean(high))  # A - B, as for accuracy
    assert result["p_a_beats_b"] == 1.0 and result["verdict"].startswith("A is better than B: -0.0900")
    assert "P(A<B)=1.00" in result["verdict"]
    assert compare_studies(b, a, "test_loss")["verdict"].startswith("A is worse than B: +0.0900")
