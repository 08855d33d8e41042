"""Test-set metrics over many bootstrap resamples at once, for the report's paired bootstrap.

A bootstrap resample of ``n`` test samples is the multiset of sample indices drawn with
replacement, i.e. a count ``w_i`` per sample. Every metric here is written on those counts:
the full test set is ``w = 1``, and a ``(B, n)`` matrix of counts scores ``B`` resamples with
one sort per class instead of ``B`` calls of torchmetrics (2,000 resamples x 8 arms of the
vit_bigearthnet smoke took 125 s through ``multilabel_average_precision``; this takes under a
second). A duplicated sample has the same score as its original, so it is a tie at the same
threshold and the step-wise AP of the resample equals the count-weighted AP of the full set.
The definitions are torchmetrics' (``multilabel_average_precision`` with ``thresholds=None``,
a class without positives scores 0 and counts in the macro mean; ``multiclass_accuracy``
top-1, macro over the classes present or predicted; the multi-label OA / accuracy / Hamming /
micro F-beta of ``rsray.train.metrics`` at threshold 0.5); ``tests/test_resampled_metrics.py``
checks each resample against torchmetrics on the resampled rows.

:func:`group_resample_counts` draws whole groups (scene, tile, zone) instead of single
samples: each resample takes ``G`` groups with replacement and every sample counts as often as
its group was drawn (a cluster bootstrap; the resample's size varies, and the count-weighted
metrics do not care). :func:`per_class_metric` gives the per-class form (AP per class,
accuracy per class) as a ``(B, C)`` matrix for per-class intervals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(predictions (n, ...), target (n, ...), counts (B, n)) -> (B,)`` metric values."""

_CHUNK = 1 << 22  # elements of one (resamples x scores) block
MULTILABEL_THRESHOLD = 0.5
"""Probability above which a label counts as predicted (``MultilabelMetrics``' default)."""


def resample_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` int32 counts: row ``b`` is how often each sample is in resample ``b``."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"resample_counts: n={n}, n_boot={n_boot}; both must be >= 1")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    flat = (idx + np.arange(n_boot)[:, None] * n).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def group_resample_counts(groups: np.ndarray | list[str], n_boot: int,
                          seed: int = 0) -> tuple[np.ndarray, int]:
    """``(n_boot, n)`` counts of a cluster bootstrap, and the number of groups ``G``.

    Resample ``b`` draws ``G`` of the ``G`` distinct groups with replacement; sample ``i``
    counts as often as its group was drawn.
    """
    g = np.asarray(groups, dtype=object).astype(str).ravel()
    if g.size < 1 or n_boot < 1:
        raise ValueError(f"group_resample_counts: n={g.size}, n_boot={n_boot}; both must be "
                         ">= 1")
    _, inverse = np.unique(g, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    per_group = resample_counts(n_groups, n_boot, seed)
    return per_group[:, inverse], n_groups


def binary_ap(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray,
              sample_of: np.ndarray | None = None) -> np.ndarray:
    """Step-wise average precision ``sum_k (R_k - R_{k-1}) P_k`` of each resample, ``(B,)``.

    ``scores``/``labels`` are ``(m,)``; ``sample_of[j]`` is the test sample of score ``j``
    (micro AP flattens samples x classes), default ``j`` itself. No positives: 0.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    src = order if sample_of is None else sample_of[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each distinct score
    out = np.empty(counts.shape[0])
    step = max(1, _CHUNK // max(1, s.size))
    for b0 in range(0, counts.shape[0], step):
        w = counts[b0:b0 + step][:, src].astype(np.float64)
        tp = np.cumsum(w * y, axis=1)[:, ends]
        seen = np.cumsum(w, axis=1)[:, ends]
        pos = tp[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(seen > 0, tp / seen, 0.0)
            recall = np.where(pos > 0, tp / pos, 0.0)
        gain = np.diff(recall, axis=1, prepend=0.0)
        out[b0:b0 + step] = (gain * precision).sum(axis=1)
    return out


def multilabel_ap(average: str) -> WeightedMetric:
    """Macro (mean over classes) or micro (all sample-class pairs) AP of multi-hot targets."""
    if average not in ("macro", "micro"):
        raise ValueError(f"multilabel_ap: average {average!r}; expected 'macro' or 'micro'")

    def fn(probs: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
        p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
        if average == "micro":
            samples = np.repeat(np.arange(p.shape[0]), p.shape[1])
            return binary_ap(p.ravel(), t.ravel(), counts, samples)
        return np.mean([binary_ap(p[:, c], t[:, c], counts) for c in range(p.shape[1])],
                       axis=0)
    return fn


def multiclass_accuracy(average: str) -> WeightedMetric:
    """Top-1 accuracy: ``micro`` (OA) or ``macro`` (AA, over the classes present)."""
    if average not in ("macro", "micro"):
        raise ValueError(f"multiclass_accuracy: average {average!r}; expected 'macro' or "
                         "'micro'")

    def fn(probs: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
        p, t = np.asarray(probs), np.asarray(target).astype(np.int64).ravel()
        correct = (p.argmax(axis=1) == t).astype(np.float64)
        w = counts.astype(np.float64)
        if average == "micro":
            return (w @ correct) / w.sum(axis=1)
        eye = np.eye(p.shape[1])
        onehot = eye[t]  # (n, C)
        support = w @ onehot
        predicted = w @ eye[p.argmax(axis=1)]
        hits = w @ (onehot * correct[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(support > 0, hits / support, 0.0)
        # torchmetrics leaves out of the mean only a class neither present nor predicted
        used = (support > 0) | (predicted > 0)
        return (per_class * used).sum(axis=1) / used.sum(axis=1)
    return fn


def _weighted_mean(per_sample: np.ndarray, counts: np.ndarray) -> np.ndarray:
    w = counts.astype(np.float64)
    return (w @ per_sample.astype(np.float64)) / w.sum(axis=1)


def binary_accuracy(probs: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over samples and heads of ``(p >= 0.5) == (target >= 0.5)``."""
    eq = (np.asarray(probs) >= 0.5) == (np.asarray(target) >= 0.5)
    return _weighted_mean(eq.reshape(eq.shape[0], -1).mean(axis=1), counts)


def _labels(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true label sets, thresholded as ``rsray.train.metrics`` does."""
    return np.asarray(probs) > MULTILABEL_THRESHOLD, np.asarray(target) > 0


def multilabel_sample_jaccard(probs: np.ndarray, target: np.ndarray,
                              counts: np.ndarray) -> np.ndarray:
    """The SEN12MS toolbox's sample-wise ``oa``: mean |pred AND true| / |pred OR true|."""
    p, t = _labels(probs, target)
    inter, union = (p & t).sum(axis=1), (p | t).sum(axis=1)
    ratio = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return _weighted_mean(ratio, counts)


def multilabel_accuracy(probs: np.ndarray, target: np.ndarray,
                        counts: np.ndarray) -> np.ndarray:
    """``acc_micro`` (= ``aa`` on these definitions): all (TP + TN) over N x C."""
    p, t = _labels(probs, target)
    return _weighted_mean((p == t).mean(axis=1), counts)


def multilabel_hamming(probs: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``hamming_loss``: 1 - ``acc_micro``."""
    return 1.0 - multilabel_accuracy(probs, target, counts)


def multilabel_fbeta(beta: float) -> WeightedMetric:
    """Micro F-beta from count-weighted TP / FP / FN (0 when nothing is predicted or true)."""
    b2 = beta * beta

    def fn(probs: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
        p, t = _labels(probs, target)
        w = counts.astype(np.float64)
        tp, fp, fn_ = (w @ (p & t).sum(axis=1), w @ (p & ~t).sum(axis=1),
                       w @ (~p & t).sum(axis=1))
        denom = (1 + b2) * tp + b2 * fn_ + fp
        return np.where(denom > 0, (1 + b2) * tp / np.where(denom > 0, denom, 1.0), 0.0)
    return fn


_MULTILABEL: dict[str, WeightedMetric] = {
    "ap_macro": multilabel_ap("macro"),
    "ap_micro": multilabel_ap("micro"),
    "oa": multilabel_sample_jaccard,
    "aa": multilabel_accuracy,
    "acc_micro": multilabel_accuracy,
    "hamming_loss": multilabel_hamming,
    "f1_micro": multilabel_fbeta(1.0),
    "f2_micro": multilabel_fbeta(2.0),
}


def multilabel_ap_per_class(probs: np.ndarray, target: np.ndarray,
                            counts: np.ndarray) -> np.ndarray:
    """``(B, C)``: AP of every class on every resample.

    NaN for a class without a positive in the resample, as ``ap_class/<name>`` in
    :mod:`rsray.train.metrics` (torchmetrics would score it 0).
    """
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target)
    ap = np.stack([binary_ap(p[:, c], t[:, c], counts) for c in range(p.shape[1])], axis=1)
    positives = counts.astype(np.float64) @ (t > 0).astype(np.float64)
    return np.where(positives > 0, ap, np.nan)


def multiclass_accuracy_per_class(probs: np.ndarray, target: np.ndarray,
                                  counts: np.ndarray) -> np.ndarray:
    """``(B, C)``: class-wise accuracy (recall of each class; NaN where a class is absent)."""
    p, t = np.asarray(probs), np.asarray(target).astype(np.int64).ravel()
    onehot = np.eye(p.shape[1])[t]
    correct = (p.argmax(axis=1) == t).astype(np.float64)
    w = counts.astype(np.float64)
    support, hits = w @ onehot, w @ (onehot * correct[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.where(support > 0, support, 1.0), np.nan)


def per_class_metric(task: str) -> tuple[str, WeightedMetric] | None:
    """The per-class metric of a task (its results-table prefix and function), or ``None``."""
    if task == "multilabel":
        return "ap_class/", multilabel_ap_per_class
    if task == "multiclass":
        return "acc_class/", multiclass_accuracy_per_class
    return None


def metric_for(metric: str, task: str) -> WeightedMetric | None:
    """The resampled form of a study's headline metric, or ``None`` when there is none."""
    if task == "multilabel" and metric in _MULTILABEL:
        return _MULTILABEL[metric]
    if task == "multiclass" and metric in ("oa", "aa"):
        return multiclass_accuracy("micro" if metric == "oa" else "macro")
    if task == "binary" and metric == "acc_mean":
        return binary_accuracy
    return None


__all__ = ["MULTILABEL_THRESHOLD", "WeightedMetric", "binary_accuracy", "binary_ap",
           "group_resample_counts", "metric_for", "multiclass_accuracy",
           "multiclass_accuracy_per_class", "multilabel_accuracy", "multilabel_ap",
           "multilabel_ap_per_class", "multilabel_fbeta", "multilabel_hamming",
           "multilabel_sample_jaccard", "per_class_metric", "resample_counts"]
