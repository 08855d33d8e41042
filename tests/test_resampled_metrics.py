"""The resampled (count-weighted) metrics equal torchmetrics on the resampled rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multilabel_average_precision,
)

from rsray.study.resampled import metric_for, resample_counts
from rsray.study.stats import bootstrap_difference, paired_bootstrap
from rsray.train.metrics import MultilabelMetrics


def _rows(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size), counts)


def _multilabel(n: int = 40, c: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = np.round(rng.random((n, c)), 1)  # rounded: many ties
    target = (rng.random((n, c)) < 0.3).astype(np.int64)
    target[:, -1] = 0
    target[0, -1] = 1  # the last class has one positive: absent from most resamples
    return probs, target


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_resampled_ap_equals_torchmetrics_on_each_resample(average: str) -> None:
    probs, target = _multilabel()
    counts = resample_counts(len(probs), 30, seed=3)
    ones = np.ones((1, len(probs)), dtype=np.int32)
    fn = metric_for(f"ap_{average}", "multilabel")
    assert fn is not None
    got = fn(probs, target, np.vstack([ones, counts]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no positive samples" on the rare class
        want = [float(multilabel_average_precision(
            torch.as_tensor(probs[r]), torch.as_tensor(target[r]), num_labels=probs.shape[1],
            average=average)) for r in [np.arange(len(probs))] + [_rows(w) for w in counts]]
    assert (counts[:, 0] == 0).any()  # some resamples lost the rare positive
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("metric,average", [("oa", "micro"), ("aa", "macro")])
def test_resampled_accuracy_equals_torchmetrics(metric: str, average: str) -> None:
    rng = np.random.default_rng(1)
    probs = rng.random((30, 4))
    target = rng.integers(0, 4, 30)
    target[0] = 3
    target[target == 3] = 2
    target[0] = 3  # class 3: one sample, absent from many resamples
    counts = resample_counts(30, 25, seed=2)
    fn = metric_for(metric, "multiclass")
    assert fn is not None
    got = fn(probs, target, counts)
    want = [float(multiclass_accuracy(torch.as_tensor(probs[_rows(w)]),
                                      torch.as_tensor(target[_rows(w)]), num_classes=4,
                                      average=average)) for w in counts]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("metric", ["oa", "aa", "acc_micro", "hamming_loss", "f1_micro",
                                    "f2_micro"])
def test_resampled_multilabel_thresholded_metrics_equal_rsray_metrics(metric: str) -> None:
    # the SEN12MS toolbox definitions as rsray.train.metrics computes them in training
    probs, target = _multilabel(n=30, c=4, seed=4)
    probs[3] = 0.0  # a sample with nothing predicted
    target[5] = 0
    probs[5] = 0.0  # nothing predicted and nothing true: ratio 1
    counts = resample_counts(30, 20, seed=7)
    fn = metric_for(metric, "multilabel")
    assert fn is not None
    got = fn(probs, target, counts)
    want = []
    for w in counts:
        m = MultilabelMetrics(4)
        r = _rows(w)
        m.update(torch.as_tensor(probs[r]).logit(eps=1e-6), torch.as_tensor(target[r]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want.append(m.compute()[metric])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_resample_counts_are_seeded_multisets_of_n() -> None:
    a, b = resample_counts(17, 50, seed=5), resample_counts(17, 50, seed=5)
    assert (a == b).all() and (a.sum(axis=1) == 17).all()
    assert not (a == resample_counts(17, 50, seed=6)).all()
    with pytest.raises(ValueError, match="n_boot=0"):
        resample_counts(3, 0)
    assert metric_for("hamming_loss", "multiclass") is None


def test_bootstrap_difference_agrees_with_the_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 200)
    good = np.eye(3)[np.where(rng.random(200) < 0.8, target, rng.integers(0, 3, 200))]
    bad = np.eye(3)[np.where(rng.random(200) < 0.6, target, rng.integers(0, 3, 200))]
    fn = metric_for("oa", "multiclass")
    assert fn is not None
    counts = resample_counts(200, 2000, seed=0)
    ones = np.ones((1, 200), dtype=np.int32)
    fast = bootstrap_difference(float(fn(good, target, ones)[0] - fn(bad, target, ones)[0]),
                                fn(good, target, counts) - fn(bad, target, counts), 200)

    def acc(p: np.ndarray, t: np.ndarray) -> float:
        return float((p.argmax(axis=1) == t).mean())

    slow = paired_bootstrap(acc, good, bad, target, n_boot=2000, seed=0)
    assert fast.mean_diff == pytest.approx(slow.mean_diff)
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=0.02)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=0.02)
    assert fast.p_value < 0.01 and slow.p_value < 0.01 and fast.n == 200


def test_per_class_metrics_equal_torchmetrics_per_class() -> None:
    from torchmetrics.functional.classification import multiclass_recall

    from rsray.study.resampled import group_resample_counts, per_class_metric

    probs, target = _multilabel(n=40, c=4, seed=8)
    groups = np.array([f"g{i // 4}" for i in range(40)])
    counts, n_groups = group_resample_counts(groups, 15, seed=2)
    assert n_groups == 10 and (counts.reshape(15, 10, 4).std(axis=2) == 0).all()
    prefix, fn = per_class_metric("multilabel")
    assert prefix == "ap_class/"
    got = fn(probs, target, counts)
    assert got.shape == (15, 4)
    for b, w in enumerate(counts):
        r = _rows(w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = multilabel_average_precision(torch.as_tensor(probs[r]),
                                                torch.as_tensor(target[r]), num_labels=4,
                                                average=None)
        has = target[r].sum(axis=0) > 0
        np.testing.assert_allclose(got[b][has], want.numpy()[has], atol=1e-6)
        assert np.isnan(got[b][~has]).all()  # no positive: undefined, as in training
    assert np.isnan(got[:, -1]).any()  # the rare class was lost by some resamples
    rng = np.random.default_rng(3)
    p, t = rng.random((40, 3)), rng.integers(0, 3, 40)
    prefix, fn = per_class_metric("multiclass")
    assert prefix == "acc_class/" and per_class_metric("segmentation") is None
    got = fn(p, t, counts)
    for b, w in enumerate(counts):
        r = _rows(w)
        want = multiclass_recall(torch.as_tensor(p[r]), torch.as_tensor(t[r]), num_classes=3,
                                 average=None).numpy()
        present = np.isin(np.arange(3), t[r])
        np.testing.assert_allclose(got[b][present], want[present], atol=1e-6)
        assert np.isnan(got[b][~present]).all()
