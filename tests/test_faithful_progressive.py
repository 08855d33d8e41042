"""Progressive fusion as progressive-fusion-globe-lulc.txt describes it, on the production model.

* 3.2.1: "After each decoder stage, the feature maps ... are backprojected to corresponding
  layers in the encoder": the feedback of decoder stage ``j`` enters encoder stage ``j``,
  while the decoder runs (forward hooks on the registered model).
* Pretrained encoders (the paper starts from ResNet50 / MobileNetV2 weights): a local
  ``pretrained_file`` is what the encoder holds after building.
* Issue 10.4: every SE reduction ratio of the ``progressive`` search space builds a distinct
  network on every shipped preset that searches it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from rsray.config import load_config
from rsray.models import create_model
from rsray.models.layers import SqueezeExcite
from rsray.tune.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = {"s2": 10, "s1": 2}
SMALL_RESNET = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}


def _record(model: nn.Module) -> list[tuple[str, Any, Any]]:
    """Hook every stage, decoder stage, fusion layer and backprojection; log (name, in, out)."""
    events: list[tuple[str, Any, Any]] = []
    pattern = re.compile(r"encoders\.\w+\.stages\.\d+|backproj\.\w+\.\d+|fusion\.\d+"
                         r"|decoder\.(\w+\.)?\d+")
    watched = {n: m for n, m in model.named_modules() if pattern.fullmatch(n)}
    for name, mod in watched.items():
        mod.register_forward_hook(
            lambda m, args, out, name=name: events.append((name, args, out))
        )
    return events


@pytest.mark.parametrize("fusion_at", ["decoder", "encoder"])
def test_feedback_of_decoder_stage_j_enters_encoder_stage_j(fusion_at: str) -> None:
    torch.manual_seed(0)
    model = create_model("test_progressive_fusion", modalities=MODALITIES, num_classes=3,
                         depth=3, fusion_at=fusion_at).eval()
    events = _record(model)
    x = {m: torch.randn(2, c, 32, 32) for m, c in MODALITIES.items()}
    with torch.no_grad():
        model(x)
    names = [e[0] for e in events]
    calls = {n: [e for e in events if e[0] == n] for n in set(names)}
    for m in MODALITIES:
        # stages 0 and 1 run twice (down + feedback), the deepest once (nothing above it)
        assert len(calls[f"encoders.{m}.stages.0"]) == 2
        assert len(calls[f"encoders.{m}.stages.1"]) == 2
        assert len(calls[f"encoders.{m}.stages.2"]) == 1
        for j in (1, 0):
            (bp,) = calls[f"backproj.{m}.{j}"]
            first, second = calls[f"encoders.{m}.stages.{j}"]
            # the refined run of stage j gets its own first input + the backprojection
            assert torch.allclose(second[1][0], first[1][0] + bp[2], atol=1e-6)
            # ... of the features decoder stage j produced just before
            src = bp[1][0]
            if fusion_at == "decoder":
                made = [e for e in events[: events.index(bp)] if e[0] == f"fusion.{j}"][-1]
            else:
                made = [e for e in events[: events.index(bp)] if e[0] == f"decoder.{j}"][-1]
            assert torch.equal(src, made[2])
    # as the decoder progresses: the feedback into stage 1 precedes decoder stage 0
    order = [n for n in names if n.startswith(("backproj.s2.", "decoder.s2.", "decoder.0",
                                               "decoder.1"))]
    first_dec0 = next(i for i, n in enumerate(order) if n in ("decoder.s2.0", "decoder.0"))
    assert order.index("backproj.s2.1") < first_dec0 < order.index("backproj.s2.0")


def test_pretrained_file_is_loaded_into_every_encoder(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = timm.create_model("resnet18", in_chans=3, **SMALL_RESNET)
    path = tmp_path / "resnet18_small.pth"
    torch.save(ref.state_dict(), path)
    saved = ref.state_dict()
    model = create_model("progressive_fusion", modalities={"rgb": 3, "s1": 2}, num_classes=3,
                         backbone="resnet18", backbone_kwargs=SMALL_RESNET, depth=4,
                         pretrained_file=str(path))
    rgb = model.encoders["rgb"]
    got = [t for mod in (rgb.stem, *rgb.stages) for t in mod.state_dict().values()]
    want = [v for k, v in saved.items() if not k.startswith("fc.")]
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    # a 2-channel modality: timm adapts the first convolution, the stages are the file's
    s1 = model.encoders["s1"]
    assert torch.allclose(s1.stem[0].weight, adapt_input_conv(2, saved["conv1.weight"]))
    got = [t for mod in s1.stages for t in mod.state_dict().values()]
    want = [v for k, v in saved.items() if k.startswith("layer")]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    # without the file the weights are timm's random init, not the file's
    fresh = create_model("progressive_fusion", modalities={"rgb": 3, "s1": 2}, num_classes=3,
                         backbone="resnet18", backbone_kwargs=SMALL_RESNET, depth=4)
    fresh_w = next(iter(fresh.encoders["rgb"].stages[1].state_dict().values()))
    assert not torch.equal(fresh_w, saved["layer2.0.conv1.weight"])


def _progressive_presets() -> list[Path]:
    paths = sorted((ROOT / "configs").glob("*.yaml"))  # demo.yaml included
    return [p for p in paths if load_config(p).tune.space.startswith("progressive")]


PRESETS = _progressive_presets()


def test_the_progressive_presets_are_found() -> None:
    names = {p.name for p in PRESETS}
    assert {"bigearthnet_progressive.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_every_se_ratio_of_the_space_builds_a_distinct_network(preset: Path) -> None:
    cfg = load_config(preset)
    space = get_space(cfg.tune.space)
    ratios = space["model.params.reduction"].categories
    depths = space["model.params.depth"].categories
    # one raster modality is enough: the SE widths do not depend on how many there are
    rasters = [m for m in cfg.data.modalities if m != "metadata"][:1]
    channels = {m: MODALITIES.get(m, 3) for m in rasters} or MODALITIES
    metadata_dim = 4 if "metadata" in cfg.data.modalities else 0
    for depth in depths:
        widths = {}
        for r in ratios:
            with torch.device("meta"):  # shapes only: full-size presets build in milliseconds
                net = create_model(cfg.model.name, modalities=channels, num_classes=3,
                                   metadata_dim=metadata_dim,
                                   **{**cfg.model.params, "depth": depth, "reduction": r})
            widths[r] = tuple(m.hidden for m in net.modules() if isinstance(m, SqueezeExcite))
        assert len(set(widths.values())) == len(ratios), (preset.name, depth, widths)
