"""Statistics of a study: summaries over seeds, paired comparisons, Holm's correction (scipy).

Two sources of uncertainty, two tests:

* **training variance** (another seed gives another model): :func:`summarize` (mean, sample
  standard deviation and Student-t confidence interval over seeds, ``scipy.stats.t.interval``)
  and :func:`paired_ttest` (an arm against a baseline over the same seeds,
  ``scipy.stats.ttest_rel``). Fewer than :data:`MIN_SEEDS` seeds give no interval and no
  p-value: a t-interval from 2 seeds has one degree of freedom (``t = 12.7``) and says nothing.
  Intervals of a bounded metric are clipped to its range (:func:`metric_range`), and say so.
* **test-set sampling** (another test set from the same regions gives another score):
  :func:`paired_bootstrap`, an arm against a baseline over the same test samples, from saved
  predictions. ``scipy.stats.bootstrap`` resamples *groups* (scene, tile, zone: neighbouring
  patches are correlated, :mod:`rsray.data.groups`) or, without groups, single samples, keeps
  the two arms and the target paired, and recomputes ``metric_fn(a) - metric_fn(b)`` on each
  resample (percentile interval: it stays inside the metric's range by construction; BCa's
  jackknife would cost one metric evaluation per group). scipy gives no bootstrap p-value, so
  it is read off scipy's bootstrap distribution (two-sided, ``(k + 1) / (B + 1)`` so it is
  never 0). :func:`verdict` says whether the two tests agree.
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
MIN_SEEDS = 3
"""Fewest seeds for a t-interval or a seed-level test (2 seeds: one degree of freedom)."""
UNIT_METRICS = ("ap", "acc", "oa", "aa", "f1", "f2", "fbeta", "iou", "miou", "auc",
                "hamming", "precision", "recall", "jaccard", "dice")
"""Name stems of metrics bounded by [0, 1] (``ap_macro``, ``val_acc_micro``, ``iou/road``)."""


def metric_range(name: str) -> tuple[float, float]:
    """The range of a metric, from its name.

    ``(0, 1)`` for scores and rates, ``(0, inf)`` for losses and errors, ``(-inf, 1)`` for R²,
    else unbounded.
    """
    base = name.split("/")[0].lower()
    for prefix in ("val_", "test_", "ood_"):
        base = base.removeprefix(prefix)
    stem = base.split("_")[0]
    if stem in UNIT_METRICS or base.startswith(("ap", "acc")):
        return 0.0, 1.0
    if stem in ("loss", "rmse", "mae", "mse") or base.endswith("loss"):
        return 0.0, math.inf
    if stem == "r2":
        return -math.inf, 1.0
    return -math.inf, math.inf


@dataclass(frozen=True)
class Summary:
    """One cell over seeds: mean, sample std (ddof=1), count and t-interval of the mean.

    The interval is NaN with fewer than :data:`MIN_SEEDS` values; ``clipped`` is true when it
    was cut to the metric's range.
    """

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    clipped: bool = False

    @property
    def has_interval(self) -> bool:
        """Whether an interval was computed (enough seeds)."""
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)


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


def summarize(values: Sequence[float] | np.ndarray, confidence: float = 0.95,
              bounds: tuple[float, float] = (-math.inf, math.inf),
              min_n: int = MIN_SEEDS) -> Summary:
    """Mean, std and Student-t confidence interval of the finite ``values``.

    Args:
        values: one value per seed.
        confidence: level of the interval.
        bounds: the metric's range (:func:`metric_range`); the interval is clipped to it.
        min_n: fewest values for an interval; below it the interval is NaN.

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
    if n < min_n:
        return Summary(mean, std, n, NAN, NAN)
    if std == 0.0:
        return Summary(mean, 0.0, n, mean, mean)
    low, high = st.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    lo, hi = max(float(low), bounds[0]), min(float(high), bounds[1])
    return Summary(mean, std, n, lo, hi, clipped=(lo, hi) != (float(low), float(high)))


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                 confidence: float = 0.95, min_n: int = MIN_SEEDS) -> PairedResult:
    """Paired t-test of ``a - b`` over seeds (``a[i]`` and ``b[i]`` share seed ``i``).

    Returns the mean difference, its t-interval and the two-sided p-value; NaN interval and
    p-value with fewer than ``min_n`` finite pairs, and a zero-width interval with p = 1 (no
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
    if n < max(2, min_n):
        return PairedResult(mean, NAN, NAN, NAN, n)
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
    groups: Sequence[Any] | np.ndarray | None = None,
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
        groups: each sample's group (scene, tile); given, a resample draws whole groups with
            replacement (a cluster bootstrap) and ``n`` counts groups, not samples.

    Returns:
        The difference on the full test set, its bootstrap interval, a two-sided bootstrap
        p-value and the number of resampled units (samples, or groups).
    """
    _check_confidence(confidence)
    pa, pb, t = np.asarray(pred_a), np.asarray(pred_b), np.asarray(target)
    n = int(t.shape[0]) if t.ndim else 0
    if pa.shape[:1] != (n,) or pb.shape[:1] != (n,):
        raise ValueError(f"paired_bootstrap: predictions of {pa.shape[:1]} and {pb.shape[:1]} "
                         f"samples for {n} targets; both arms must score the same samples")
    if n_boot < 1:
        raise ValueError(f"paired_bootstrap.n_boot: {n_boot} must be >= 1")
    if groups is None:
        members = [np.array([i]) for i in range(n)]
    else:
        g = np.asarray(groups, dtype=object).ravel()
        if g.size != n:
            raise ValueError(f"paired_bootstrap: {g.size} groups for {n} samples")
        _, inverse = np.unique(g.astype(str), return_inverse=True)
        members = [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]
    units = len(members)
    if units < 2:
        raise ValueError(f"paired_bootstrap: {units} {'group' if groups is not None else 'sample'}"
                         "(s); need at least 2")

    def diff(idx: np.ndarray) -> float:
        i = np.concatenate([members[k] for k in np.asarray(idx, dtype=np.intp)])
        return float(metric_fn(pa[i], t[i])) - float(metric_fn(pb[i], t[i]))

    observed = diff(np.arange(units))
    res = st.bootstrap((np.arange(units),), diff, n_resamples=n_boot, vectorized=False,
                       method="percentile", confidence_level=confidence,
                       rng=np.random.default_rng(seed))
    return bootstrap_difference(observed, res.bootstrap_distribution, units, confidence)


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


@dataclass(frozen=True)
class Improvement:
    """P(a run of the arm beats a run of the baseline) over seeds, with its interval."""

    p: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int


def prob_improvement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
                     min_n: int = MIN_SEEDS) -> Improvement:
    """Probability that a seed of ``a`` scores above a seed of ``b`` (ties count one half).

    The Mann-Whitney statistic ``U / (n_a n_b)`` over every pair of seeds (the "probability of
    outperforming" of Bouthillier et al., 2021), with a percentile interval from resampling
    each arm's seeds (``scipy.stats.bootstrap``, independent samples). Lower-is-better
    metrics: pass ``-a, -b``. NaN interval with fewer than ``min_n`` seeds on a side.
    """
    _check_confidence(confidence)
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        return Improvement(NAN, NAN, NAN, int(x.size), int(y.size))

    def stat(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        gt = (u[..., :, None] > v[..., None, :]).mean(axis=(-2, -1))
        eq = (u[..., :, None] == v[..., None, :]).mean(axis=(-2, -1))
        return gt + 0.5 * eq

    p = float(stat(x, y))
    if min(x.size, y.size) < min_n:
        return Improvement(p, NAN, NAN, int(x.size), int(y.size))
    res = st.bootstrap((x, y), stat, n_resamples=n_boot, method="percentile", vectorized=True,
                       paired=False, confidence_level=confidence,
                       rng=np.random.default_rng(seed))
    return Improvement(p, float(res.confidence_interval.low),
                       float(res.confidence_interval.high), int(x.size), int(y.size))


def verdict(seed_test: PairedResult | None, boot: PairedResult | None,
            alpha: float = 0.05) -> str:
    """Whether the seed-level test and the test-set bootstrap agree on arm vs baseline.

    Each side says ``better`` / ``worse`` (p < ``alpha``, by the sign of the difference) or
    ``no difference``; ``n/a`` where a side has no p-value. Returns ``"agree: <call>"``,
    ``"DISAGREE: seeds <call>, bootstrap <call>"`` or ``"seeds only: ..."`` /
    ``"bootstrap only: ..."``.
    """
    def call(r: PairedResult | None) -> str:
        if r is None or not math.isfinite(r.p_value):
            return "n/a"
        if r.p_value >= alpha:
            return "no difference"
        return "better" if r.mean_diff > 0 else "worse"

    a, b = call(seed_test), call(boot)
    if a == "n/a" and b == "n/a":
        return "n/a"
    if a == "n/a":
        return f"bootstrap only: {b}"
    if b == "n/a":
        return f"seeds only: {a}"
    return f"agree: {a}" if a == b else f"DISAGREE: seeds {a}, bootstrap {b}"


__all__ = ["MIN_SEEDS", "Improvement", "PairedResult", "Summary", "bootstrap_difference", "holm",
           "metric_range", "paired_bootstrap", "paired_ttest", "prob_improvement", "summarize",
           "verdict"]
