"""Study splits (nested fractions, hold-outs), task losses/metrics and the task-generic decode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsray.config import Config
from rsray.data.augment import augment_raw
from rsray.data.decode import decode_raw
from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan, GroupPlan, ModalityPlan
from rsray.data.schema import BandGroup, DatasetSpec, ModalitySpec, encode_array
from rsray.data.splits import (
    apply_holdout,
    check_fractions,
    fraction_mask,
    parse_holdout,
    seeded_split,
)
from rsray.errors import ConfigError
from rsray.train.losses import CrossEntropyDice, build_loss
from rsray.train.task_metrics import BinaryHeadsMetrics, MulticlassMetrics, SegmentationMetrics
from rsray.train.tasks import build_task, resolve_for_task, table_metrics

# --- splits ---------------------------------------------------------------------------------


def test_fractions_are_nested_and_close_to_target() -> None:
    ids = [f"patch_{i}" for i in range(4000)]
    masks = {f: fraction_mask(ids, f, seed=3) for f in (0.1, 0.25, 0.5, 1.0)}
    for small, big in [(0.1, 0.25), (0.25, 0.5), (0.5, 1.0)]:
        assert not (masks[small] & ~masks[big]).any(), f"{small} subset not inside {big}"
    for f, m in masks.items():
        assert abs(m.mean() - f) < 0.03
    other_seed = fraction_mask(ids, 0.25, seed=4)
    assert (other_seed != masks[0.25]).any()
    # order-independent: the same patch is in or out whatever the batch it arrives in
    assert fraction_mask(ids[::-1], 0.25, seed=3)[::-1].tolist() == masks[0.25].tolist()


def _items() -> list[dict]:
    return [
        {"patch_id": "a", "split": "train", "groups": {"country": "Serbia", "lat": 44.0}},
        {"patch_id": "b", "split": "val", "groups": {"country": "Portugal", "lat": 39.5}},
        {"patch_id": "c", "split": "train", "groups": {"country": "Finland", "lat": 62.0}},
        {"patch_id": "d", "split": "test", "groups": {"country": "Austria", "lat": 47.0}},
    ]


def test_holdout_by_value_and_by_range() -> None:
    items = _items()
    info = apply_holdout(items, parse_holdout(["country=Serbia,Portugal"]), dataset="toy")
    assert [it["split"] for it in items] == ["ood", "ood", "train", "test"]
    assert info["moved"] == 2 and info["moved_from"] == {"train": 1, "val": 1}
    items = _items()
    apply_holdout(items, parse_holdout(["lat=45:"]), dataset="toy")
    assert [it["split"] for it in items] == ["train", "val", "ood", "ood"]


@pytest.mark.parametrize(("spec", "message"), [
    ("country", "expected key=value"),
    ("lat=50:40", "lower bound"),
    ("tile=33UUP", "carry no 'tile'"),
    ("country=Narnia", "no toy sample matches"),
])
def test_holdout_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_holdout(_items(), parse_holdout([spec]), dataset="toy")


# --- losses and metrics ----------------------------------------------------------------------


def test_ce_dice_loss_and_task_defaults() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    loss = CrossEntropyDice(alpha=0.5)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    perfect = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float() * 50
    assert CrossEntropyDice(alpha=0.5)(perfect, target) < 0.01
    cfg = Config()
    assert type(build_loss(cfg.train, "segmentation")).__name__ == "CrossEntropyDice"
    with pytest.raises(ConfigError, match="does not fit a segmentation"):
        build_loss(cfg.with_overrides({"train.loss": "bce"}).train, "segmentation")
    seg = resolve_for_task(cfg, "segmentation")
    assert (seg.train.metric, seg.train.mode) == ("val_miou", "max")
    assert resolve_for_task(cfg, "multiclass").train.metric == "val_oa"
    assert resolve_for_task(cfg.with_overrides({"train.metric": "val_loss"}),
                            "binary").train.mode == "min"
    assert table_metrics("binary", ["val", "ood"])[:2] == ["val_acc_mean", "val_auc_mean"]


def test_multiclass_metrics_oa_aa_classwise() -> None:
    m = MulticlassMetrics(3, ["forest", "water", "urban"])
    target = torch.tensor([0, 0, 0, 0, 1, 1])
    pred = torch.tensor([0, 0, 0, 1, 1, 0])
    m.update(torch.nn.functional.one_hot(pred, 3).float(), target)
    out = m.compute()
    assert out["oa"] == pytest.approx(4 / 6)
    assert out["acc_class/forest"] == pytest.approx(0.75)
    assert out["acc_class/water"] == pytest.approx(0.5)
    assert math.isnan(out["acc_class/urban"])  # absent class: NaN, left out of AA
    assert out["aa"] == pytest.approx(0.625)


def test_binary_heads_accuracy_and_auc() -> None:
    m = BinaryHeadsMetrics(2, ["snow_ice", "leaves_on_trees"])
    logits = torch.tensor([[3.0, -1.0], [-2.0, 1.0], [1.0, 2.0], [-1.0, -3.0]])
    target = torch.tensor([[1, 0], [0, 1], [0, 1], [0, 1]])
    m.update(logits, target)
    out = m.compute()
    assert out["acc/snow_ice"] == pytest.approx(0.75)
    assert out["auc/snow_ice"] == pytest.approx(1.0)
    assert out["acc/leaves_on_trees"] == pytest.approx(0.75)
    assert out["auc_mean"] == pytest.approx((1.0 + out["auc/leaves_on_trees"]) / 2)
    one_valued = BinaryHeadsMetrics(1)
    one_valued.update(torch.tensor([[1.0], [2.0]]), torch.tensor([[1], [1]]))
    assert math.isnan(one_valued.compute()["auc_mean"])


def test_segmentation_metrics_exclude_other_and_confusion() -> None:
    m = SegmentationMetrics(3, ["building", "water", "other"], exclude_from_mean=["other"])
    target = torch.tensor([[[0, 0], [1, 2]]])
    pred = torch.tensor([[[0, 1], [1, 2]]])
    m.update(torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).float(), target)
    out = m.compute()
    assert out["iou/building"] == pytest.approx(0.5)
    assert out["iou/water"] == pytest.approx(0.5)
    assert out["iou/other"] == pytest.approx(1.0)
    assert out["miou"] == pytest.approx(0.5)  # 'other' is not in the mean
    assert out["oa"] == pytest.approx(0.75)
    assert m.confusion_matrix() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    task = build_task(Config(), "segmentation", ["building", "water", "other"], ["other"])
    assert task.target({"label": target}) is target


# --- task-generic decode: series, vector, segmentation mask -----------------------------------


def _toy_rows(n: int = 3) -> tuple[dict, DecodePlan]:
    rng = np.random.default_rng(0)
    spec = DatasetSpec(
        name="toy", task="segmentation", classes=("a", "b", "other"), label_size=8,
        exclude_from_mean=("other",),
        modalities=(
            ModalitySpec("aerial", (BandGroup("aerial", ("r", "g"), 8, "uint8"),)),
            ModalitySpec("s2", (BandGroup("s2", ("b1", "b2", "b3"), 4, "uint16", kind="series",
                                          max_len=5),)),
            ModalitySpec("meta", (BandGroup("meta", ("lat", "elev"), 0, "float32",
                                            kind="vector"),)),
        ),
    )
    batch: dict[str, list] = {"label": [], "patch_id": [], "aerial": [], "s2": [], "s2_shape": [],
                              "s2_dates": [], "meta": []}
    lengths = [2, 5, 1][:n]
    for i, t in enumerate(lengths):
        batch["patch_id"].append(f"p{i}")
        batch["label"].append(encode_array(rng.integers(0, 3, (8, 8)), "uint8"))
        batch["aerial"].append(encode_array(rng.integers(0, 255, (2, 8, 8)), "uint8"))
        batch["s2"].append(encode_array(np.full((t, 3, 4, 4), 100 * (i + 1)), "uint16"))
        batch["s2_shape"].append([t, 3, 4, 4])
        batch["s2_dates"].append(list(range(10, 10 + 30 * t, 30)))
        batch["meta"].append(encode_array(np.array([45.0 + i, 300.0]), "float32"))
    plan = DecodePlan(
        modalities=(
            ModalityPlan("aerial", (GroupPlan("aerial", (2, 8, 8), "uint8"),), ("r", "g"),
                         (100.0, 100.0), (50.0, 50.0)),
            ModalityPlan("s2", (GroupPlan("s2", (5, 3, 4, 4), "uint16", "series"),),
                         ("b1", "b2", "b3"), (100.0,) * 3, (10.0,) * 3, "series"),
            ModalityPlan("meta", (GroupPlan("meta", (2,), "float32", "vector"),),
                         ("lat", "elev"), (45.0, 300.0), (1.0, 100.0), "vector"),
        ),
        num_classes=3, image_size=16, resample="bilinear", task="segmentation", label_size=8,
    )
    assert spec.label_info == {"exclude_from_mean": ["other"], "size": 8}
    return {k: np.array(v, dtype=object) if k not in ("label",) else v
            for k, v in batch.items()}, plan


def test_series_vector_and_mask_decode_with_padding() -> None:
    rows, plan = _toy_rows()
    raw = decode_raw(rows, plan)
    assert raw["s2"].shape == (3, 5, 3, 4, 4)
    assert raw["s2__mask"].tolist() == [[1, 1, 0, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]
    assert raw["s2__dates"][0].tolist() == [10, 40, 0, 0, 0]
    assert raw["label"].shape == (3, 8, 8) and raw["meta"].shape == (3, 2)
    out = finalize_batch(raw, plan)
    assert out["aerial"].shape == (3, 2, 16, 16)
    assert out["label"].shape == (3, 16, 16) and out["label"].dtype == torch.int64
    assert out["s2"].shape == (3, 5, 3, 4, 4)
    assert out["s2_mask"].dtype == torch.bool
    # real dates are normalised, padded ones stay exactly zero
    assert torch.allclose(out["s2"][1, :, 0], torch.full((5, 4, 4), 10.0))
    assert torch.count_nonzero(out["s2"][0, 2:]) == 0
    assert torch.allclose(out["metadata"], torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    assert plan.channels == {"aerial": 2, "s2": 3} and plan.metadata_dim == 2


def test_segmentation_augmentation_keeps_mask_aligned() -> None:
    rows, plan = _toy_rows()
    raw = decode_raw(rows, plan)
    # make the aerial image encode the mask so any misalignment shows
    raw["aerial"] = np.repeat(raw["label"][:, None], 2, axis=1).astype(np.uint8)
    out = augment_raw({k: v.copy() for k, v in raw.items()}, plan, desync=True,
                      rng=np.random.default_rng(1))
    assert np.array_equal(out["aerial"][:, 0], out["label"])
    assert not np.array_equal(out["label"], raw["label"])  # something was transformed


def test_train_fraction_filters_rows_by_patch_id() -> None:
    rows, plan = _toy_rows()
    from dataclasses import replace

    sub = replace(plan, train_fraction=0.5, fraction_seed=0)
    assert "patch_id" in sub.columns
    keep = fraction_mask(["p0", "p1", "p2"], 0.5, 0)
    raw = decode_raw(rows, sub)
    assert len(raw["label"]) == int(keep.sum())
    assert len(raw["s2__mask"]) == int(keep.sum())


def test_seeded_split_is_deterministic_stable_and_proportional():
    names = [f"S2A_MSIL2A_20170613T101031_{c}_{r}" for c in range(60) for r in range(50)]
    splits = [seeded_split(n, 0, (0.7, 0.15, 0.15)) for n in names]
    assert splits == [seeded_split(n, 0) for n in names]  # deterministic, defaults
    frac = {s: splits.count(s) / len(names) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.15) < 0.03
    assert splits != [seeded_split(n, 1) for n in names]  # the seed matters
    assert {seeded_split(n, 0, (0.0, 0.0, 1.0)) for n in names[:50]} == {"test"}


def test_check_fractions():
    assert check_fractions(["0.8", 0.1, 0.1]) == (0.8, 0.1, 0.1)
    for bad in ((0.5, 0.1, 0.1), (0.7, 0.3), (1.2, -0.1, -0.1), ("a", "b", "c")):
        with pytest.raises(ConfigError, match="split_fractions"):
            check_fractions(bad)


def test_segmentation_output_of_the_wrong_size_is_one_clear_error() -> None:
    # a series-only model without output_size predicts at the series' resolution
    task = build_task(Config(), "segmentation", ["building", "water", "other"])
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    task.check_output(torch.zeros(2, 3, 64, 64), target, "test_utae")  # right size: silent
    with pytest.raises(ConfigError, match=r"test_utae: predicts 16 x 16 maps for 64 x 64 .*"
                                          r"output_size=64"):
        task.check_output(torch.zeros(2, 3, 16, 16), target, "test_utae")
    build_task(Config(), "multilabel", ["a", "b"]).check_output(
        torch.zeros(2, 2), torch.zeros(2, 2), "any")  # other tasks: nothing to check
