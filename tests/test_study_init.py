"""``rsray study init``: the spec written for a shard set's modalities and task (manifests
written by hand here; tests/test_files_e2e.py runs a generated spec end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsray.data.shards import Manifest, ShardInfo, write_manifest
from rsray.errors import ConfigError
from rsray.study.check import check_study
from rsray.study.init import render, study_for
from rsray.study.spec import apply_smoke, spec_from_dict


def _manifest(root: Path, task: str, mods: dict[str, tuple[str, int]], train: int = 300) -> str:
    shards = [ShardInfo(f"{s}/shard-00000.parquet", s, n, 1, "0")
              for s, n in (("train", train), ("val", 60), ("test", 60))]
    modalities = {m: {"bands": ["a", "b"], "groups": {m: {"bands": ["a", "b"], "size": size,
                                                          "dtype": "float32", "kind": kind}}}
                  for m, (kind, size) in mods.items()}
    write_manifest(str(root), Manifest(dataset="mine", task=task, classes=["x", "y", "z"],
                                       modalities=modalities, shards=shards,
                                       band_stats={m: {b: {"mean": 0.0, "std": 1.0}
                                                       for b in ("a", "b")} for m in mods}))
    return str(root)


def test_two_image_modalities_get_every_family_and_the_vit_fusions(tmp_path: Path) -> None:
    uri = _manifest(tmp_path, "multilabel", {"s2": ("image", 120), "s1": ("image", 120)})
    spec, notes = study_for(uri)
    names = [a["name"] for a in spec["arms"]]
    assert names == ["s2_only", "s1_only", "early", "middle", "late", "gated", "attention",
                     "vit_early", "vit_middle", "vit_cross_attention", "vit_sct"]
    assert {a["space"] for a in spec["arms"]} == {"shared"}
    assert {a["model"].rsplit("_", 1)[-1] for a in spec["arms"][:7]} == {"resnet18"}
    assert all(a["params"]["model.params.patch_size"] == 15 for a in spec["arms"][7:])
    assert spec["metrics"] == ["ap_micro", "ap_macro", "f2_micro"]
    assert set(spec["smoke"]["arms"]) == set(names)
    assert spec["search"]["num_samples"] == 4 and spec["factors"]["seeds"] == 5
    loaded = spec_from_dict(spec, "generated")  # valid as written, smoke variant too
    assert loaded.baseline == "s2_only" and "baseline" in " ".join(notes)
    assert render(spec, notes).startswith("# Written by `rsray study init`")
    assert len(check_study(loaded, data=uri).arms) == 11


def test_three_modalities_no_vit_and_sizes_follow_the_set(tmp_path: Path) -> None:
    uri = _manifest(tmp_path, "regression", {"s2": ("image", 32), "s1": ("image", 16),
                                             "dem": ("image", 8), "ts": ("series", 32)},
                    train=8000)
    spec, notes = study_for(uri)
    names = [a["name"] for a in spec["arms"]]
    assert "vit_early" not in names and names[:3] == ["s2_only", "s1_only", "dem_only"]
    assert spec["arms"][3]["modalities"] == ["s2", "s1", "dem"]  # the series is left out ...
    assert any("ts (series)" in n for n in notes)  # ... and the notes say so
    assert spec["metrics"] == ["r2_mean", "rmse_mean", "mae_mean"]
    assert spec["search"]["num_samples"] == 12 and spec["factors"]["seeds"] == 3
    assert spec["base"]["data.image_size"] == 32


def test_segmentation_sets_get_unetformer_arms_and_pass_the_check(tmp_path: Path) -> None:
    uri = _manifest(tmp_path, "segmentation", {"s2": ("image", 48), "s1": ("image", 48),
                                               "ts": ("series", 48)})
    spec, notes = study_for(uri)
    arms = {a["name"]: a for a in spec["arms"]}
    assert list(arms) == ["s2_only", "s1_only", "early"]
    assert {a["model"] for a in arms.values()} == {"unetformer_resnet18"}
    assert arms["early"]["params"] == {"model.params.image_modality": "s2",
                                       "model.params.extra_modalities": ["s1"]}
    assert arms["s1_only"]["params"] == {"model.params.image_modality": "s1"}
    assert spec["metrics"] == ["miou", "oa"]
    assert spec["base"]["data.image_size"] == 64  # UNetFormer: multiples of 32
    text = " ".join(notes)
    assert "no segmentation head" in text and "ts" in text and "lf_dlm_small" in text
    loaded = spec_from_dict(spec, "generated")
    assert len(check_study(loaded, data=uri).arms) == 3
    smoke = spec_from_dict(apply_smoke(dict(spec), "generated"), "generated", variant="smoke")
    assert len(check_study(smoke, data=uri).arms) == 3  # the tiny MaxViT UNetFormer at 64 px


def test_unsupported_sets_are_named(tmp_path: Path) -> None:
    uri = _manifest(tmp_path / "b", "multiclass", {"ts": ("series", 32)})
    with pytest.raises(ConfigError, match="no image modality"):
        study_for(uri)
    spec, _ = study_for(_manifest(tmp_path / "c", "multiclass", {"s2": ("image", 32)}))
    assert [a["name"] for a in spec["arms"]] == ["s2_only"]  # one modality: its own arm only
    spec = spec_from_dict(study_for(_manifest(tmp_path / "c", "multiclass",
                                              {"s2": ("image", 32)}))[0], "g")
    with pytest.raises(ConfigError, match="not in"):
        check_study(spec, data=_manifest(tmp_path / "d", "multiclass", {"s1": ("image", 32)}))
