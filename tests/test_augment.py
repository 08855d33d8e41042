"""Augmentations on the path training uses: Ray Data ``transform`` -> ``finalize_batch``."""

from __future__ import annotations

import numpy as np
import pytest

from rsray.config import DataConfig
from rsray.data import augment as aug
from rsray.data.augment import augment_kwargs, check_augment
from rsray.data.datasets import transform
from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan, GroupPlan, ModalityPlan
from rsray.errors import ConfigError

N, S = 32, 16


def _plan(task: str = "multilabel") -> DecodePlan:
    mods = tuple(ModalityPlan(name, (GroupPlan(name, (2, S, S), "uint16"),), ("x", "y"),
                              (100.0, 100.0), (10.0, 10.0)) for name in ("a", "b"))
    return DecodePlan(mods, num_classes=3, image_size=S, resample="bilinear", task=task)


def _rows(x: np.ndarray) -> dict[str, list]:
    """Shard-like rows: the same uint16 image as modality ``a`` and ``b``."""
    return {"label": [np.array([1, 0, 1], np.uint8)] * len(x),
            "a": [xi.tobytes() for xi in x], "b": [xi.tobytes() for xi in x]}


def _images(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(150, 4000, size=(N, 2, S, S)).astype(np.uint16)


def _run(cfg: DataConfig, seed: int = 0, plan: DecodePlan | None = None) -> dict:
    plan = plan or _plan()
    out = transform(_rows(_images()), plan, augment_kwargs(cfg), seed=seed)
    return {k: v.numpy() for k, v in finalize_batch(out, plan).items()}


def test_crop_box_is_the_same_ground_at_every_resolution() -> None:
    fine = np.zeros((1, 1, 8, 8), np.uint16)
    fine[..., :4, 4:] = 7  # top-right quadrant
    coarse = fine[..., ::2, ::2].copy()  # the same ground at half the resolution
    box = np.array([[0.25, 0.625, 0.125]])  # inside the top-right quadrant
    assert (aug.resized_crop(fine, box) == 7).all()
    assert (aug.resized_crop(coarse, box) == 7).all()
    assert aug.resized_crop(fine, box).dtype == np.uint16
    np.testing.assert_array_equal(aug.resized_crop(fine, np.array([[1.0, 0, 0]])), fine)
    mask = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)  # nearest keeps class indices
    assert set(np.unique(aug.resized_crop(mask, box, "nearest"))) <= set(range(64))


def test_draw_respects_scale_range_and_ops() -> None:
    d = aug.draw(np.random.default_rng(0), 500, aug.OPS, (0.6, 0.9))
    side, left, top = d.box.T
    assert side.min() >= 0.6 and side.max() <= 0.9 and side.std() > 0.05
    assert (left >= 0).all() and (left + side <= 1).all() and (top + side <= 1).all()
    no_rot = aug.draw(np.random.default_rng(0), 500, ("hflip",), (0.6, 0.9))
    assert (no_rot.k == 0).all() and (no_rot.box[:, 0] == 1).all() and no_rot.flip.any()


def test_synchronised_crop_and_flip_give_both_modalities_one_transform() -> None:
    out = _run(DataConfig(crop_scale=[0.5, 0.8]))
    np.testing.assert_array_equal(out["a"], out["b"])
    plain = _run(DataConfig(crop_scale=[1.0, 1.0], augment_ops={"a": [], "b": []}))
    assert not np.allclose(out["a"], plain["a"])  # something was transformed


def test_desynchronised_crop_draws_per_modality() -> None:
    out = _run(DataConfig(crop_scale=[0.5, 0.8], desync_augment=True,
                          augment_ops={"a": ["crop"], "b": ["crop"]}))
    differ = [not np.allclose(out["a"][i], out["b"][i]) for i in range(N)]
    assert all(differ)  # continuous boxes: two draws never coincide
    flips = _run(DataConfig(desync_augment=True))  # flips/rot90 only: 1 in 8 coincide
    assert 0.5 < np.mean([not np.allclose(flips["a"][i], flips["b"][i]) for i in range(N)]) < 1


def test_ops_per_modality_keep_quarter_turns_off() -> None:
    out = _run(DataConfig(desync_augment=True, augment_ops={"a": ["hflip"], "b": []}))
    plain = _run(DataConfig(augment_ops={"a": [], "b": []}))
    np.testing.assert_array_equal(out["b"], plain["b"])
    for i in range(N):  # a: identity or a horizontal flip, never a rotation
        assert (np.array_equal(out["a"][i], plain["a"][i])
                or np.array_equal(out["a"][i], plain["a"][i][..., ::-1]))
    assert any(not np.array_equal(out["a"][i], plain["a"][i]) for i in range(N))


def test_modality_dropping_zeroes_one_modality_after_normalisation() -> None:
    out = _run(DataConfig(modality_dropout=0.999, augment_ops={"a": [], "b": []}))
    zero_a = ~out["a"].reshape(N, -1).any(axis=1)
    zero_b = ~out["b"].reshape(N, -1).any(axis=1)
    assert (zero_a ^ zero_b).all()  # exactly one of the two, never both
    assert zero_a.any() and zero_b.any()
    kept = _run(DataConfig(modality_dropout=0.0, augment_ops={"a": [], "b": []}))
    assert kept["a"].reshape(N, -1).any(axis=1).all()  # normalised values are non-zero


def test_segmentation_rejects_unequal_ops() -> None:
    plan = _plan("segmentation")
    with pytest.raises(ConfigError, match=r"data\.augment_ops"):
        check_augment(plan, DataConfig(augment_ops={"a": ["hflip"]}))
    with pytest.raises(ConfigError, match="not image modalities"):
        check_augment(plan, DataConfig(augment_ops={"zzz": ["hflip"]}))
    check_augment(plan, DataConfig(crop_scale=[0.5, 1.0]))  # images only: allowed


def test_config_rejects_bad_crop_and_ops() -> None:
    with pytest.raises(ConfigError, match=r"data\.crop_scale"):
        DataConfig(crop_scale=[0.9, 0.5]).validate()
    with pytest.raises(ConfigError, match=r"data\.augment_ops\.a"):
        DataConfig(augment_ops={"a": ["spin"]}).validate()
    with pytest.raises(ConfigError, match=r"data\.bands\.s2"):
        DataConfig(bands={"s2": []}).validate()


def test_streamed_training_split_is_augmented_as_configured(synthetic_shards) -> None:
    """Through Ray Data (``build_datasets``): dropped modalities are flagged and zero."""
    from rsray.data.datasets import build_datasets
    from rsray.data.plan import make_plan

    cfg = DataConfig(uri=synthetic_shards, modality_dropout=0.5, crop_scale=[0.5, 0.9],
                     desync_augment=True)
    manifest, datasets = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg, for_training=True)
    raw = next(iter(datasets["train"].iter_torch_batches(batch_size=32)))
    dropped = raw["drop_s1"].numpy().astype(bool)
    assert 0 < dropped.sum() < len(dropped)
    batch = finalize_batch(raw, plan)
    s1 = batch["s1"].reshape(len(dropped), -1)
    assert (s1[dropped] == 0).all() and s1[~dropped].abs().sum(1).gt(0).all()
