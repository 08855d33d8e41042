"""``rsray study init --data SHARDS``: a study spec written for a shard set's modalities and task.

The spec compares, on the same backbone (ResNet-18) and the same search space (``shared``:
learning rate and weight decay, the keys every family takes), each single modality against
early, middle, late, gated and attention fusion of all image modalities, plus the ViT fusions
(early, middle, cross-attention, synchronised class token) when the set has exactly two image
modalities. Its metrics are the task's table metrics; the stage-1 budget, the epochs and the
number of seeds are sized from the training split. A ``smoke:`` variant swaps in the tiny
``test_*`` models so that ``rsray study SPEC --data SHARDS --smoke-test`` checks the whole path
in a minute or two.

A segmentation set gets the families that predict a mask from image modalities: each single
modality and early fusion (channels concatenated) through UNetFormer-ResNet18. The other
families classify whole images (no segmentation head), and LF-DLM / U-Net + U-TAE need a
time series beside one image modality; the spec's comment header says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from rsray.data.shards import Manifest, read_manifest
from rsray.errors import ConfigError
from rsray.train.tasks import TABLE_METRICS

BACKBONE = "resnet18"
SPACE = "shared"
CNN_FAMILIES: tuple[tuple[str, str], ...] = (
    ("early", "early_fusion"), ("middle", "middle_fusion"), ("late", "late_fusion"),
    ("gated", "gated_fusion"), ("attention", "attention_fusion"),
)
"""(arm name, model family) of the CNN fusion arms; the model is ``<family>_<backbone>``."""
VIT_FAMILIES: tuple[tuple[str, str], ...] = (
    ("vit_early", "vit_early_fusion"), ("vit_middle", "vit_middle_fusion"),
    ("vit_cross_attention", "vit_cross_attention_fusion"), ("vit_sct", "vit_sct_fusion"),
)
"""(arm name, model family) of the ViT arms (two image modalities only)."""
PATCH_SIZES = (16, 15, 12, 10, 8, 6, 5, 4)
SEG_MODEL = "unetformer_resnet18"
"""The segmentation arms' model: UNetFormer with a ResNet-18 encoder (inputs: multiples of 32)."""
SEG_SMOKE = ("test_unetformer", 64)
"""The smoke variant's segmentation model (a tiny MaxViT UNetFormer) and its input size."""


def _image_modalities(m: Manifest) -> tuple[list[str], list[str]]:
    """(image modalities, modalities left out with why) of a manifest."""
    images, skipped = [], []
    for name, info in m.modalities.items():
        kinds = {g.get("kind", "image") for g in info.get("groups", {}).values()}
        if kinds == {"image"}:
            images.append(name)
        else:
            skipped.append(f"{name} ({'/'.join(sorted(kinds))})")
    return images, skipped


def _max_size(m: Manifest, mods: list[str]) -> int:
    return max(int(g["size"]) for n in mods for g in m.modalities[n]["groups"].values())


def _sizing(n_train: int) -> dict[str, int]:
    """Stage-1 trials and epochs, stage-2 seeds, batch size, from the training split's size."""
    if n_train < 500:
        return {"trials": 4, "search_epochs": 5, "epochs": 30, "seeds": 5, "batch": 16}
    if n_train < 5000:
        return {"trials": 8, "search_epochs": 5, "epochs": 20, "seeds": 5, "batch": 32}
    return {"trials": 12, "search_epochs": 3, "epochs": 15, "seeds": 3, "batch": 64}


def _classification_arms(images: list[str], image_size: int, notes: list[str]
                         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Single modalities, the CNN fusion families and (two images) the ViT fusions."""
    arms: list[dict[str, Any]] = [
        {"name": f"{x}_only", "model": f"single_modality_{BACKBONE}", "modalities": [x],
         "space": SPACE, "params": {"model.params.modality": x}} for x in images]
    smoke_arms: dict[str, Any] = {f"{x}_only": {"model": "test_single_modality_cnn"}
                                  for x in images}
    if len(images) > 1:
        for arm, family in CNN_FAMILIES:
            arms.append({"name": arm, "model": f"{family}_{BACKBONE}",
                         "modalities": list(images), "space": SPACE})
            smoke_arms[arm] = {"model": f"test_{family}_cnn"}
    if len(images) == 2:
        patch = next((p for p in PATCH_SIZES if image_size % p == 0 and image_size // p >= 4),
                     0)
        if patch:
            for arm, family in VIT_FAMILIES:
                params = {"model.params.img_size": image_size, "model.params.patch_size": patch}
                arms.append({"name": arm, "model": f"{family}_small",
                             "modalities": list(images), "space": SPACE, "params": params})
                smoke_arms[arm] = {"model": f"test_{family}"}
        else:
            notes.append(f"no ViT arms: no patch size in {PATCH_SIZES} divides the image size "
                         f"{image_size}")
    return arms, smoke_arms


def _segmentation_arms(images: list[str], skipped: list[str], notes: list[str]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Single modalities and early fusion through UNetFormer; notes on the other families."""
    arms: list[dict[str, Any]] = [
        {"name": f"{x}_only", "model": SEG_MODEL, "modalities": [x], "space": SPACE,
         "params": {"model.params.image_modality": x}} for x in images]
    if len(images) > 1:
        arms.append({"name": "early", "model": SEG_MODEL, "modalities": list(images),
                     "space": SPACE,
                     "params": {"model.params.image_modality": images[0],
                                "model.params.extra_modalities": list(images[1:])}})
    smoke_arms = {a["name"]: {"model": SEG_SMOKE[0]} for a in arms}
    notes.append(f"segmentation: single modalities and early fusion (channels concatenated) "
                 f"through {SEG_MODEL}; middle, late, gated and attention fusion and the ViT "
                 "fusions classify whole images (no segmentation head), so they are not arms")
    series = [x.split(" ")[0] for x in skipped if "series" in x]
    if series:
        notes.append(f"the time series {', '.join(series)} beside one image modality can be "
                     "added by hand as LF-DLM late fusion (lf_dlm_small: image_modality, "
                     "series_modality, crop_size) or U-Net + U-TAE middle fusion "
                     "(unet_utae_resnet18)")
    return arms, smoke_arms


def study_for(uri: str, name: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The spec (a mapping ready for YAML) for the shard set at ``uri``, and notes about it.

    Raises:
        ConfigError: the set has no image modality, or no train, val or test split.
    """
    m = read_manifest(uri)
    images, skipped = _image_modalities(m)
    if not images:
        raise ConfigError(f"{uri}: no image modality (found {', '.join(skipped)})")
    n_train = int(m.splits.get("train", 0))
    if n_train < 1 or not m.splits.get("val"):
        raise ConfigError(f"{uri}: a study needs train and val splits (found "
                          f"{dict(m.splits)})")
    size = _sizing(n_train)
    image_size = _max_size(m, images)
    notes = [f"{m.dataset}: {m.task}, {len(m.classes)} classes/targets, splits "
             f"{dict(sorted(m.splits.items()))}, image modalities {images}"]
    if skipped:
        notes.append("not in the arms (CNN fusion takes image modalities): " + ", ".join(skipped))
    singles = [f"{x}_only" for x in images]
    smoke_base: dict[str, Any] = {}
    if m.task == "segmentation":
        arms, smoke_arms = _segmentation_arms(images, skipped, notes)
        if image_size % 32:
            new_size = image_size + 32 - image_size % 32
            notes.append(f"images resampled from {image_size} to {new_size} px: UNetFormer "
                         "takes sides that are multiples of 32")
            image_size = new_size
        smoke_base["data.image_size"] = SEG_SMOKE[1]
    else:
        arms, smoke_arms = _classification_arms(images, image_size, notes)
    metrics = [x for x in TABLE_METRICS[m.task] if x != "loss"]
    spec: dict[str, Any] = {
        "name": name or f"{m.dataset}_fusion",
        "description": f"Which fusion of {', '.join(images)} is best for {m.dataset} "
                       f"({m.task}), and does any beat the best single modality?",
        "data": {"uri": m.uri or uri},
        "base": {"data.image_size": image_size, "data.batch_size": size["batch"],
                 "train.max_epochs": size["epochs"], "scaling.cpus_per_worker": 1.0},
        "arms": arms,
        "baseline": singles[0],
        "single_modality": singles,
        "metrics": metrics,
        "search": {"num_samples": size["trials"], "max_epochs": size["search_epochs"],
                   "grace_period": 1, "reduction_factor": 2},
        "factors": {"fractions": [1.0], "holdouts": [""], "seeds": size["seeds"]},
        "evaluation": {"splits": ["test"] if m.splits.get("test") else ["val"],
                       "drop_modalities": len(images) > 1, "predictions": True},
        "smoke": {"base": {"data.batch_size": 8, "train.max_epochs": 1,
                           "train.log_every_n_steps": 1000, **smoke_base},
                  "search": {"num_samples": 1, "max_epochs": 1}, "factors": {"seeds": 2},
                  "arms": smoke_arms},
    }
    if not m.splits.get("test"):
        raise ConfigError(f"{uri}: no test split to evaluate on (splits {dict(m.splits)})")
    notes.append(f"baseline: {singles[0]}, the first single modality (the study's paired "
                 "tests compare against one fixed arm; the report's per-class figure uses the "
                 "best single modality); change `baseline:` to another *_only arm if you know "
                 "better")
    notes.append(f"sized from {n_train} training samples: {size['trials']} trials x "
                 f"{size['search_epochs']} epochs per arm, {size['epochs']} epochs x "
                 f"{size['seeds']} seeds in stage 2")
    return spec, notes


def render(spec: dict[str, Any], notes: list[str]) -> str:
    """YAML text with the notes as a comment header."""
    head = "".join(f"# {line}\n" for line in [
        "Written by `rsray study init`; run it with `rsray study THIS.yaml` "
        "(--smoke-test: tiny models first).", *notes])
    return head + yaml.safe_dump(spec, sort_keys=False, width=100)


def cmd_init(args: argparse.Namespace) -> None:
    """``rsray study init --data SHARDS [--name NAME] [--out FILE]``: print or write a spec."""
    if not args.data:
        raise ConfigError("rsray study init: --data SHARDS is required (a prepared shard set)")
    spec, notes = study_for(args.data, getattr(args, "name", None))
    from rsray.study.spec import spec_from_dict

    spec_from_dict(spec, "generated spec")  # what we print must load
    text = render(spec, notes)
    target = getattr(args, "spec_out", None)
    if target:
        with open(target, "w") as f:
            f.write(text)
        print(f"[study init] wrote {target}", file=sys.stderr)
    else:
        sys.stdout.write(text)




__all__ = ["cmd_init", "render", "study_for"]
