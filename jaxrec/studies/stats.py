"""Statistics of results over seeds, the way seed studies report them: `describe` summarises one metric over a
study's seeds, `compare` decides between two studies. Bootstraps are seeded, so a study's statistics are reproducible.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as scipy_stats

RESAMPLES = 10_000


def _t_interval(mean: float, sem: float, dof: float,
                bounds: tuple[float, float] = (-math.inf, math.inf)) -> list[float]:
    if not math.isfinite(sem) or dof <= 0:
        return [float("nan"), float("nan")]
    half = float(scipy_stats.t.ppf(0.975, dof)) * sem
    return [max(mean - half, bounds[0]), min(mean + half, bounds[1])]


def variance_ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """var(a) / var(b) and its two-sided F-test p-value (normal samples), e.g. whether one source of randomness
    moves a result as much as all of them; None for both under 2 values or where b has no spread."""
    if min(len(a), len(b)) < 2 or spread_note(b):
        return {"ratio": None, "p": None}  # no spread to compare with: a ratio would be inf or nan
    var_a, var_b = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    ratio = var_a / var_b
    tail = float(scipy_stats.f.cdf(ratio, len(a) - 1, len(b) - 1))
    return {"ratio": ratio, "p": min(1.0, 2 * min(tail, 1 - tail))}


def bootstrap_mean_interval(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES) -> list[float]:
    """Percentile bootstrap 95% interval of the mean (values resampled with replacement)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def spread_note(values: Sequence[float], unit: str = "seed") -> str | None:
    """Why a spread, interval or test cannot be had from `values` (one per `unit`), or None: one value has no
    spread, and identical values show none (an interval from them would claim certainty it does not have)."""
    if len(values) < 2:
        return f"{len(values)} {unit}{'s' if len(values) != 1 else ''}: a spread needs at least 2"
    if float(np.ptp(np.asarray(values, np.float64))) == 0:
        return f"no spread observed: {len(values)} {unit}s identical"
    return None


def describe(values: Sequence[float], seed: int = 0, unit: str = "seed",
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """One value per `unit` summarised as docs/studies.md's What a study writes defines; ci95 clipped to `bounds`."""
    values = [float(v) for v in values]
    array = np.asarray(values, np.float64)
    n, note = len(values), spread_note(values, unit)
    mean = float(array.mean())
    std = None if n < 2 else 0.0 if np.ptp(array) == 0 else float(array.std(ddof=1))  # identical: exactly 0
    sem = std / math.sqrt(n) if std is not None else None
    intervals = {"std_ci95": None, "ci95": None, "bootstrap_ci95": None} if note else {
        # the std's, from n normal samples: how sure a study of n seeds can be about its own spread
        "std_ci95": [std * math.sqrt((n - 1) / float(scipy_stats.chi2.ppf(q, n - 1))) for q in (0.975, 0.025)],
        "ci95": _t_interval(mean, sem, n - 1, bounds),
        "bootstrap_ci95": bootstrap_mean_interval(array, seed)}
    return {"n": n, "mean": mean, "std": std, "sem": sem, **intervals,
            "median": float(np.median(array)), "min": float(array.min()), "max": float(array.max()),
            "range": float(array.max() - array.min()), "values": values, "note": note}


def prob_a_beats_b(a: Sequence[float], b: Sequence[float]) -> float:
    """P(A > B) + P(A = B) / 2 for a random value of `a` against a random value of `b`."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, float | list[float]]:
    """Difference of means (a - b) with Welch's 95% interval, its degrees of freedom and the two-sided p-value."""
    note = untestable(a, b)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = float(a.mean() - b.mean())
    if note:
        return {"difference": difference, "ci95": None, "dof": None, "p_value": None, "note": note}
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    p = float(2 * scipy_stats.t.sf(abs(difference) / se, dof))
    return {"difference": difference, "ci95": _t_interval(difference, se, dof), "dof": float(dof), "p_value": p,
            "note": None}


def untestable(a: Sequence[float], b: Sequence[float]) -> str | None:
    """Why A and B cannot be tested against each other, or None: a study of one seed, or no spread
    in either (Welch's test would divide by a zero spread and claim certainty: p = 0)."""
    small = [f"{name} has {len(v)} seed{'s' if len(v) != 1 else ''}" for name, v in (("A", a), ("B", b)) if len(v) < 2]
    if small:
        return f"{' and '.join(small)}: a test needs at least 2 seeds per study"
    if spread_note(a) and spread_note(b):
        return (f"no spread observed: A's {len(a)} seeds are identical and so are B's {len(b)}; check that each "
                "study varies what it should (study.json's vary)")
    return None


def seeds_needed(a: Sequence[float], b: Sequence[float], power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Seeds per arm for a two-sided t-test to detect the observed difference with `power` (noncentral t, pooled std:
    the normal approximation promises too few at a few seeds); None when there is no difference to detect."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = abs(a.mean() - b.mean())
    if difference == 0 or untestable(a, b):
        return None
    effect = difference / math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    n = max(2, math.ceil(2 * (z / effect) ** 2))  # the normal approximation: a lower bound
    while _t_test_power(effect, n, alpha) < power:
        n += 1
    return n


def _t_test_power(effect: float, n: int, alpha: float) -> float:
    """The power of a two-sided two-sample t-test with n per arm for an effect of `effect` standard deviations."""
    dof, shift = 2 * n - 2, effect * math.sqrt(n / 2)
    critical = scipy_stats.t.ppf(1 - alpha / 2, dof)
    return float(scipy_stats.nct.sf(critical, dof, shift) + scipy_stats.nct.cdf(-critical, dof, shift))


def compare(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True, seed: int = 0,
            resamples: int = RESAMPLES) -> dict[str, Any]:
    """Study A against study B on one metric, with a one-line verdict (docs/studies.md, Comparing two studies)."""
    test = welch(a, b)
    rng = np.random.default_rng(seed)
    sign = 1.0 if higher_is_better else -1.0
    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    interval = None
    if not test["note"]:
        resampled = [prob_a_beats_b(sign * a_arr[rng.integers(0, len(a_arr), len(a_arr))],
                                    sign * b_arr[rng.integers(0, len(b_arr), len(b_arr))])
                     for _ in range(resamples // 10)]
        interval = [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))]
    result = {"n_a": len(a_arr), "n_b": len(b_arr), "mean_a": float(a_arr.mean()), "mean_b": float(b_arr.mean()),
              "higher_is_better": higher_is_better, **test, "p_a_beats_b": prob_a_beats_b(sign * a_arr, sign * b_arr),
              "p_a_beats_b_bootstrap_ci95": interval, "seeds_per_arm_for_80pct_power": seeds_needed(a_arr, b_arr)}
    return {**result, "verdict": verdict(result)}


def verdict(result: dict[str, Any]) -> str:
    """One line a researcher can paste."""
    n = f"n={result['n_a']} vs {result['n_b']} seeds"
    if result["p_value"] is None:
        return (f"No test at {n}: {result['note']}. Means A {result['mean_a']:.4f}, B {result['mean_b']:.4f} "
                f"(difference {result['difference']:+.4f}).")
    low, high = result["ci95"]
    difference = f"{result['difference']:+.4f} (95% CI {low:+.4f} to {high:+.4f}, Welch p={result['p_value']:.3g})"
    needed = result["seeds_per_arm_for_80pct_power"]
    p_low, p_high = result["p_a_beats_b_bootstrap_ci95"]
    higher = result["higher_is_better"]
    beats = f"P(A{'>' if higher else '<'}B)={result['p_a_beats_b']:.2f} (bootstrap {p_low:.2f}-{p_high:.2f})"
    if result["p_value"] < 0.05:
        word = "better" if (result["difference"] > 0) == higher else "worse"
        return f"A is {word} than B: {difference}, {beats} at {n}."
    more = f"; a t-test finds a difference this size 80% of the time at about {needed} seeds per arm" if needed else ""
    return f"No detectable difference at {n}: {difference}, {beats}{more}."
