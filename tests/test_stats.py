"""Study statistics against scipy, statsmodels (constants) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from rsray.study.resampled import group_resample_counts, metric_for
from rsray.study.stats import (
    bootstrap_difference,
    holm,
    metric_range,
    paired_bootstrap,
    paired_ttest,
    summarize,
    verdict,
)


def test_summarize_hand_computed() -> None:
    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302652729749464, half width = t / sqrt 3
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    half = 4.302652729749464 / math.sqrt(3)
    assert s.ci_low == pytest.approx(2 - half, rel=1e-12)
    assert s.ci_high == pytest.approx(2 + half, rel=1e-12)


def test_summarize_matches_scipy_and_other_levels() -> None:
    x = np.random.default_rng(3).normal(0.7, 0.05, size=7)
    s = summarize(x, confidence=0.9)
    low, high = st.t.interval(0.9, 6, loc=x.mean(), scale=st.sem(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert summarize(x, 0.99).ci_high > s.ci_high


def test_summarize_edge_cases() -> None:
    one = summarize([0.5])
    assert one.mean == 0.5 and one.n == 1
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)
    same = summarize([0.3, 0.3, 0.3])
    assert (same.ci_low, same.ci_high, same.std) == (0.3, 0.3, 0.0)
    nan = summarize([1.0, float("nan"), 3.0, 2.0])  # an undefined seed is left out
    assert nan.n == 3 and nan.mean == 2.0
    two = summarize([0.4, 0.9])  # 2 seeds: no interval, the std is still given
    assert two.n == 2 and not two.has_interval and two.std == pytest.approx(0.3535533906)
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=95)


def test_paired_ttest_hand_computed_and_scipy() -> None:
    a, b = [0.80, 0.82, 0.85, 0.79], [0.75, 0.80, 0.81, 0.78]
    # differences 0.05, 0.02, 0.04, 0.01: mean 0.03, s = sqrt(0.001/3), t = 0.03 / (s / 2)
    r = paired_ttest(a, b)
    s = math.sqrt(0.001 / 3)
    t = 0.03 / (s / 2)
    assert r.mean_diff == pytest.approx(0.03)
    assert r.p_value == pytest.approx(2 * st.t.sf(t, 3), rel=1e-9)
    half = st.t.ppf(0.975, 3) * s / 2
    assert (r.ci_low, r.ci_high) == pytest.approx((0.03 - half, 0.03 + half), rel=1e-9)
    ref = st.ttest_rel(a, b)
    assert r.p_value == pytest.approx(ref.pvalue) and r.n == 4
    # the interval excludes 0 exactly when p < 0.05
    assert (r.ci_low > 0) == (r.p_value < 0.05)


def test_paired_ttest_edge_cases() -> None:
    assert math.isnan(paired_ttest([1.0], [0.5]).p_value)
    const = paired_ttest([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert const.mean_diff == 0.5 and const.p_value == 0.0 and const.ci_low == 0.5
    assert paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).p_value == 1.0
    two = paired_ttest([0.8, 0.9], [0.5, 0.55])  # 2 seeds: no test (t_{0.975, 1} = 12.7)
    assert two.n == 2 and two.mean_diff == pytest.approx(0.325)
    assert math.isnan(two.p_value) and math.isnan(two.ci_low)
    assert paired_ttest([0.8, 0.9], [0.5, 0.55], min_n=2).p_value < 0.1
    assert paired_ttest([1.0, float("nan"), 3.0, 4.0], [0.0, 1.0, 1.0, 3.0]).n == 3
    with pytest.raises(ValueError, match="same seeds"):
        paired_ttest([1.0, 2.0], [1.0])


def _accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float((pred.argmax(1) == target).mean())


def test_paired_bootstrap_detects_a_better_arm_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    n, k = 400, 4
    target = rng.integers(0, k, size=n)
    good = rng.random((n, k))
    good[np.arange(n), target] += 0.8  # right ~90 %
    bad = rng.random((n, k))
    bad[np.arange(n), target] += 0.2  # right ~45 %
    r = paired_bootstrap(_accuracy, good, bad, target, n_boot=500, seed=1)
    assert r.n == n
    assert r.mean_diff == pytest.approx(_accuracy(good, target) - _accuracy(bad, target))
    assert 0 < r.ci_low < r.mean_diff < r.ci_high
    assert r.p_value == pytest.approx(2 / 501)  # no resample at or below 0: (0 + 1) / (B + 1)
    again = paired_bootstrap(_accuracy, good, bad, target, n_boot=500, seed=1)
    assert again == r
    # an arm against itself: difference 0 on every resample, p = 1
    same = paired_bootstrap(_accuracy, good, good, target, n_boot=200, seed=0)
    assert same.mean_diff == 0.0 and same.p_value == 1.0


def test_paired_bootstrap_interval_has_the_paired_spread() -> None:
    """The interval is about as wide as the paired differences' standard error says."""
    rng = np.random.default_rng(5)
    n = 60
    target = rng.integers(0, 2, size=n)
    a = rng.random((n, 2))
    b = rng.random((n, 2))
    r = paired_bootstrap(_accuracy, a, b, target, n_boot=300, seed=7)
    # independent check: the distribution's spread is that of a paired difference, so its
    # interval must lie within the observed difference +- 4 standard errors of paired 0/1 data
    d = (a.argmax(1) == target).astype(float) - (b.argmax(1) == target).astype(float)
    se = d.std(ddof=1) / math.sqrt(n)
    assert r.mean_diff == pytest.approx(d.mean())
    assert r.ci_low > d.mean() - 4 * se and r.ci_high < d.mean() + 4 * se
    assert r.ci_low < d.mean() < r.ci_high


def test_paired_bootstrap_rejects_unpaired_input() -> None:
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(_accuracy, np.zeros((5, 2)), np.zeros((4, 2)), np.zeros(5))


# statsmodels 0.15.0 ``multipletests(p, method="holm")[1]`` for these inputs
STATSMODELS_HOLM = [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.2, 0.01, 0.5, 0.03, 0.04], [0.4, 0.05, 0.5, 0.12, 0.12]),
    ([0.001], [0.001]),
]


@pytest.mark.parametrize(("p", "expected"), STATSMODELS_HOLM)
def test_holm_matches_statsmodels(p: list[float], expected: list[float]) -> None:
    assert holm(p) == pytest.approx(expected)


def test_holm_hand_computed() -> None:
    # m = 3: sorted 0.01, 0.02, 0.04 -> 3*0.01 = 0.03, 2*0.02 = 0.04, 1*0.04 = 0.04;
    # a large p is capped at 1; monotone: a later smaller product is raised to the running max
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.9, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.011, 0.02]) == pytest.approx([0.022, 0.022])
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([1.5])


def test_holm_differs_from_scipy_bh() -> None:
    """scipy's false_discovery_control is Benjamini-Hochberg, not Holm (why Holm is here)."""
    p = [0.01, 0.04, 0.03, 0.005]
    bh = st.false_discovery_control(p)
    assert not np.allclose(bh, holm(p))
    assert all(h >= b - 1e-12 for h, b in zip(holm(p), bh, strict=True))


# ------------------------------------------------------------------ ranges and few seeds


def test_interval_of_a_bounded_metric_stays_in_its_range() -> None:
    # AP over 3 seeds near 1: the raw t-interval passes 1 and is clipped (and says so)
    s = summarize([0.97, 0.999, 0.93], bounds=metric_range("ap_macro"))
    raw = st.t.interval(0.95, 2, loc=s.mean, scale=st.sem([0.97, 0.999, 0.93]))
    assert raw[1] > 1.0 and s.ci_high == 1.0 and s.clipped
    assert s.ci_low == pytest.approx(raw[0])
    assert not summarize([0.5, 0.6, 0.55], bounds=(0.0, 1.0)).clipped
    assert metric_range("ap_macro") == metric_range("val_acc_micro") == (0.0, 1.0)
    assert metric_range("ap_class/Urban fabric") == (0.0, 1.0)
    assert metric_range("hamming_loss") == (0.0, 1.0)
    assert metric_range("loss") == metric_range("rmse_mean") == (0.0, math.inf)
    assert metric_range("r2_mean") == (-math.inf, 1.0)


def test_verdict_flags_disagreement() -> None:
    from rsray.study.stats import PairedResult

    sig_up = PairedResult(0.05, 0.01, 0.09, 0.01, 5)
    flat = PairedResult(0.02, -0.01, 0.05, 0.3, 5)
    sig_down = PairedResult(-0.05, -0.09, -0.01, 0.01, 5)
    assert verdict(sig_up, sig_up) == "agree: better"
    assert verdict(flat, flat) == "agree: no difference"
    assert verdict(sig_up, flat) == "DISAGREE: seeds better, bootstrap no difference"
    assert verdict(sig_down, sig_up).startswith("DISAGREE")
    assert verdict(None, sig_up) == "bootstrap only: better"
    assert verdict(PairedResult(0.1, math.nan, math.nan, math.nan, 2), flat) == (
        "bootstrap only: no difference")


# ---------------------------------------------------------------------- grouped bootstrap


def _mean_fn(pred: np.ndarray, target: np.ndarray) -> float:
    return float(pred.mean())


def test_grouped_bootstrap_hand_computed() -> None:
    """Groups A = {1, 1} and B = {0}: a resample of 2 groups is AA, AB, BA or BB.

    The mean over the drawn samples is 1 (AA, p 1/4), 2/3 (AB or BA: (1 + 1 + 0) / 3,
    p 1/2) or 0 (BB, p 1/4); a per-sample bootstrap would also give 1/3 (one 1, two 0s).
    """
    values = np.array([1.0, 1.0, 0.0])
    zeros = np.zeros(3)
    groups = ["A", "A", "B"]
    r = paired_bootstrap(_mean_fn, values, zeros, zeros, n_boot=4000, seed=3, groups=groups)
    assert r.n == 2 and r.mean_diff == pytest.approx(2 / 3)
    # the fast path: group counts into the count-weighted metric
    counts, n_groups = group_resample_counts(np.array(groups), 4000, seed=3)
    assert n_groups == 2
    assert set(np.unique(counts[:, 0] - counts[:, 1])) == {0}  # A's samples move together
    w = counts.astype(float)
    dist = (w @ values) / w.sum(axis=1)
    got = {round(float(v), 6): float(np.mean(np.isclose(dist, v))) for v in (1.0, 2 / 3, 0.0)}
    assert sum(got.values()) == pytest.approx(1.0)  # no other value, unlike per sample
    assert got[1.0] == pytest.approx(0.25, abs=0.03)
    assert got[round(2 / 3, 6)] == pytest.approx(0.5, abs=0.03)
    assert got[0.0] == pytest.approx(0.25, abs=0.03)
    # percentiles of that distribution: 2.5 % at 0, 97.5 % at 1
    res = bootstrap_difference(2 / 3, dist, 2)
    assert (res.ci_low, res.ci_high) == (0.0, 1.0)


def test_grouped_bootstrap_matches_scipy_on_group_means() -> None:
    """With equal-size groups, the grouped bootstrap of a mean is scipy's bootstrap of the
    group means: same interval up to Monte Carlo error, and wider than per sample."""
    rng = np.random.default_rng(11)
    g, m = 25, 12
    groups = np.repeat([f"tile{i:02d}" for i in range(g)], m)
    effect = rng.normal(0, 1.0, g)
    d = np.repeat(effect, m) + rng.normal(0, 0.5, g * m)  # per-sample paired differences
    zeros = np.zeros(g * m)
    ours = paired_bootstrap(_mean_fn, d, zeros, zeros, n_boot=3000, seed=0, groups=groups)
    ref = st.bootstrap((d.reshape(g, m).mean(axis=1),), np.mean, n_resamples=3000,
                       method="percentile", rng=np.random.default_rng(1))
    assert ours.n == g and ours.mean_diff == pytest.approx(d.mean())
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.08 * width)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.08 * width)
    flat = paired_bootstrap(_mean_fn, d, zeros, zeros, n_boot=3000, seed=0)
    assert flat.n == g * m and (flat.ci_high - flat.ci_low) < 0.6 * width
    # the count-weighted fast path agrees with the scipy path on a real metric
    fn = metric_for("acc_mean", "binary")
    assert fn is not None
    right = (d > 0).astype(float)
    counts, _ = group_resample_counts(groups, 3000, seed=5)
    fast = bootstrap_difference(float(right.mean()), fn(right, np.ones(g * m), counts), g)
    slow = paired_bootstrap(_mean_fn, right, zeros, zeros, n_boot=3000, seed=5, groups=groups)
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=0.03)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=0.03)


def test_grouped_bootstrap_rejects_bad_groups() -> None:
    with pytest.raises(ValueError, match="2 groups for 3 samples"):
        paired_bootstrap(_mean_fn, np.zeros(3), np.zeros(3), np.zeros(3), groups=["a", "b"])
    with pytest.raises(ValueError, match="1 group"):
        paired_bootstrap(_mean_fn, np.zeros(3), np.zeros(3), np.zeros(3), groups=["a"] * 3)


def test_coverage_grouped_near_nominal_per_sample_below() -> None:
    from rsray.study.coverage import simulate

    r = simulate(simulations=60, n_boot=300, seed=1)
    assert r.grouped >= 0.85, r
    assert r.per_sample <= r.grouped - 0.1, r
    assert r.per_sample_width < r.grouped_width


def test_prob_improvement_hand_computed_and_scipy() -> None:
    from rsray.study.stats import prob_improvement

    # pairs (3, 1) > , (3, 3) tie = 1/2, (4, 1) >, (4, 3) >: 3.5 / 4; 2 seeds: no interval
    two = prob_improvement([3.0, 4.0], [1.0, 3.0])
    assert two.p == 0.875 and math.isnan(two.ci_low)
    a, b = [0.8, 0.82, 0.85, 0.79, 0.81], [0.75, 0.80, 0.81, 0.78, 0.77]
    r = prob_improvement(a, b, n_boot=1000)
    assert r.p == pytest.approx(st.mannwhitneyu(a, b).statistic / 25)  # U / (n_a n_b)
    assert 0.0 <= r.ci_low < r.p <= r.ci_high <= 1.0 and (r.n_a, r.n_b) == (5, 5)
    assert prob_improvement(b, a).p == pytest.approx(1 - r.p)
