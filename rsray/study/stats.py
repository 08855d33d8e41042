"""Statistics of a study: summaries over seeds, paired comparisons, Holm's correction (scipy).

* :func:`summarize`: mean, sample standard deviation and Student-t confidence interval of one
  cell's values over seeds (``scipy.stats.t.interval``).
* :func:`paired_ttest`: an arm against a baseline over the same seeds (paired t-test,
  ``scipy.stats.ttest_rel`` and its ``confidence_interval``).
* :func:`paired_bootstrap`: an arm against a baseline over the same *test samples*, from saved
  predictions: ``scipy.stats.bootstrap`` resamples sample indices (so the two arms and the
  target stay paired) and recomputes ``metric_fn(a) - metric_fn(b)`` on each resample
  (percentile interval; BCa's jackknife would cost one metric evaluation per test sample).
  scipy gives no bootstrap p-value, so it is read off scipy's bootstrap distribution
  (two-sided, ``(k + 1) / (B + 1)`` so it is never 0).
* :func:`holm`: Holm's step-down adjusted p-values. scipy has none
  (``scipy.stats.false_discovery_control`` is Benjamini-Hochberg / -Yekutieli, a different
  error rate), so it is written here (tested against statsmodels' ``multipletests``).

Non-finite values (a metric that was undefined for one seed) are left out and counted out of
``n``; a pair is left out when either side is non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as st

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """One cell over seeds: mean, sample std (ddof=1), count and t-interval of the mean."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedResult:
    """Arm minus baseline: the difference, its confidence interval, a p-value, pairs used."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence} must be in (0, 1)")


def summarize(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Summary:
    """Mean, std and Student-t confidence interval of the finite ``values``.

    ``n = 1`` gives the value as mean and NaN std / interval; ``n = 0`` all NaN. Identical
    values give a zero-width interval.
    """
    _check_confidence(confidence)
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Summary(NAN, NAN, 0, NAN, NAN)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, NAN, 1, NAN, NAN)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Summary(mean, 0.0, n, mean, mean)
    low, high = st.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(mean, std, n, float(low), float(high))


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                 confidence: float = 0.95) -> PairedResult:
    """Paired t-test of ``a - b`` over seeds (``a[i]`` and ``b[i]`` share seed ``i``).

    Returns the mean difference, its t-interval and the two-sided p-value; NaN interval and
    p-value with fewer than two finite pairs, and a zero-width interval with p = 1 (no
    difference) or 0 (a constant non-zero difference) when every difference is the same.
    """
    _check_confidence(confidence)
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired_ttest: {x.size} values against {y.size}; pairs need "
                         "the same seeds on both sides")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n == 0:
        return PairedResult(NAN, NAN, NAN, NAN, 0)
    d = x - y
    mean = float(d.mean())
    if n == 1:
        return PairedResult(mean, NAN, NAN, NAN, 1)
    if float(d.std(ddof=1)) == 0.0:
        return PairedResult(mean, mean, mean, 1.0 if mean == 0.0 else 0.0, n)
    res = st.ttest_rel(x, y)
    ci = res.confidence_interval(confidence_level=confidence)
    return PairedResult(mean, float(ci.low), float(ci.high), float(res.pvalue), n)


def paired_bootstrap(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    pred_a: Any,
    pred_b: Any,
    target: Any,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult:
    """Paired bootstrap of ``metric_fn(pred_a, target) - metric_fn(pred_b, target)``.

    Args:
        metric_fn: ``(predictions, target) -> float`` on arrays whose first axis is the test
            sample (e.g. macro AP from probabilities and multi-hot targets).
        pred_a: the first arm's predictions (the arm under test), one row per sample.
        pred_b: the second arm's predictions (the baseline) of the same samples, same order.
        target: the samples' targets.
        n_boot: bootstrap resamples.
        seed: seed of the resampling (same seed, same answer).
        confidence: level of the percentile interval.

    Returns:
        The difference on the full test set, its bootstrap interval, a two-sided bootstrap
        p-value and the number of samples.
    """
    _check_confidence(confidence)
    pa, pb, t = np.asarray(pred_a), np.asarray(pred_b), np.asarray(target)
    n = int(t.shape[0]) if t.ndim else 0
    if pa.shape[:1] != (n,) or pb.shape[:1] != (n,):
        raise ValueError(f"paired_bootstrap: predictions of {pa.shape[:1]} and {pb.shape[:1]} "
                         f"samples for {n} targets; both arms must score the same samples")
    if n < 2:
        raise ValueError(f"paired_bootstrap: {n} sample(s); need at least 2")
    if n_boot < 1:
        raise ValueError(f"paired_bootstrap.n_boot: {n_boot} must be >= 1")

    def diff(idx: np.ndarray) -> float:
        i = np.asarray(idx, dtype=np.intp)
        return float(metric_fn(pa[i], t[i])) - float(metric_fn(pb[i], t[i]))

    observed = diff(np.arange(n))
    res = st.bootstrap((np.arange(n),), diff, n_resamples=n_boot, vectorized=False,
                       method="percentile", confidence_level=confidence,
                       rng=np.random.default_rng(seed))
    return bootstrap_difference(observed, res.bootstrap_distribution, n, confidence)


def bootstrap_difference(observed: float, distribution: Any, n: int,
                         confidence: float = 0.95) -> PairedResult:
    """A paired bootstrap's result from its distribution of ``metric(a) - metric(b)``.

    Percentile interval (the quantiles scipy's ``method="percentile"`` takes, with
    ``alpha = (1 - confidence) / 2`` tails) and the two-sided ``(k + 1) / (B + 1)`` p-value;
    for distributions computed elsewhere (``rsray.study.resampled`` scores every resample of
    both arms at once, on shared resample counts, so the pairing holds).
    """
    _check_confidence(confidence)
    dist = np.asarray(distribution, dtype=float).ravel()
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return PairedResult(float(observed), NAN, NAN, NAN, n)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    below = (int((dist <= 0).sum()) + 1) / (dist.size + 1)
    above = (int((dist >= 0).sum()) + 1) / (dist.size + 1)
    p = min(1.0, 2.0 * min(below, above))
    return PairedResult(float(observed), float(low), float(high), float(p), n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the ``m`` p-values sorted ascending, the ``i``-th (1-based) becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``. NaN p-values stay NaN and do not count in
    ``m``.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, NAN)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out.tolist()
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p[ok].tolist()}")
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()


__all__ = ["PairedResult", "Summary", "bootstrap_difference", "holm", "paired_bootstrap",
           "paired_ttest", "summarize"]
