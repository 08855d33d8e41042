"""Issue 11 item 4, the GPU path, run on the CPU: on-device augmentation equals the host one,
masks move with images, the device-resident split covers every row once per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsray.config import DataConfig
from rsray.data import augment as aug
from rsray.data.augment import augment_device, augment_kwargs
from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan, GroupPlan, ModalityPlan
from rsray.errors import ConfigError
from rsray.train.batches import ResidentSplit, device_generator, model_batches, resolve_augment_on

N, S = 32, 16
CPU = torch.device("cpu")


def _plan(task: str = "multilabel", image_size: int = S) -> DecodePlan:
    """Modality ``a`` with a 10 m and a 20 m group (uint16), ``b`` one float32 group."""
    a = ModalityPlan("a", (GroupPlan("a10", (2, S, S), "uint16"),
                           GroupPlan("a20", (1, S // 2, S // 2), "uint16")),
                     ("x", "y", "z"), (100.0, 200.0, 300.0), (10.0, 20.0, 30.0))
    b = ModalityPlan("b", (GroupPlan("b", (2, S, S), "float32"),), ("u", "v"),
                     (0.5, -0.5), (2.0, 3.0))
    return DecodePlan((a, b), num_classes=3, image_size=image_size, resample="bilinear",
                      task=task, label_size=S if task == "segmentation" else 0)


def _raw(seed: int = 0, task: str = "multilabel") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (rng.integers(0, 5, (N, S, S)).astype(np.uint8) if task == "segmentation"
             else rng.random((N, 3)).astype(np.float32))  # float targets (regression) too
    return {"label": label,
            "a10": rng.integers(150, 4000, (N, 2, S, S)).astype(np.uint16),
            "a20": rng.integers(150, 4000, (N, 1, S // 2, S // 2)).astype(np.uint16),
            "b": rng.standard_normal((N, 2, S, S)).astype(np.float32),
            "drop_a": np.zeros(N, np.uint8), "drop_b": np.zeros(N, np.uint8)}


def _torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.copy()) for k, v in batch.items()}


def _as_torch(d: aug.Draw) -> aug.Draw:
    return aug.Draw(torch.from_numpy(d.k), torch.from_numpy(d.flip), torch.from_numpy(d.box))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_dihedral_and_crop_on_device_equal_numpy(dtype) -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((16, 3, S, S)) * 250).astype(dtype)
    k, flip = np.tile(np.arange(4), 4), np.repeat([False, True], 8)  # all eight classes
    got = aug.dihedral_torch(torch.from_numpy(x), torch.from_numpy(k), torch.from_numpy(flip))
    np.testing.assert_array_equal(got.numpy(), aug.dihedral(x, k, flip))
    assert got.dtype == torch.from_numpy(x).dtype
    i = int(np.nonzero(flip & (k == 0))[0][0])
    np.testing.assert_array_equal(got[i].numpy(), np.flip(x[i], axis=-1))
    d = aug.draw(rng, 16, aug.OPS, (0.4, 0.9))
    np.testing.assert_allclose(aug.apply_torch(torch.from_numpy(x), _as_torch(d)).numpy(),
                               aug.apply(x, d), atol=1e-4 if dtype == np.float32 else 0)
    series = rng.random((4, 3, 2, S, S)).astype(np.float32)  # (N, T, C, H, W): every date
    ds = aug.draw(rng, 4, aug.OPS, (0.5, 0.9))
    np.testing.assert_allclose(aug.apply_torch(torch.from_numpy(series), _as_torch(ds)).numpy(),
                               aug.apply(series, ds), atol=1e-5)


def test_device_draw_has_the_host_distribution() -> None:
    gen = device_generator(CPU, 0)
    d = aug.draw_torch(gen, 4000, aug.OPS, (0.6, 0.9), CPU)
    counts = torch.bincount(d.k, minlength=4).numpy() / 4000
    assert np.abs(counts - 0.25).max() < 0.03 and abs(d.flip.float().mean().item() - 0.5) < 0.03
    side, left, top = d.box.T.numpy()
    assert side.min() >= 0.6 and side.max() <= 0.9 and abs(side.mean() - 0.75) < 0.01
    assert (left >= 0).all() and (left + side <= 1).all() and (top + side <= 1).all()
    no_rot = aug.draw_torch(gen, 500, ("hflip",), (0.6, 0.9), CPU)
    assert (no_rot.k == 0).all() and (no_rot.box[:, 0] == 1).all() and no_rot.flip.any()


def test_device_augment_then_finalize_equals_host_path() -> None:
    """Same draws: host NumPy augment + finalize == device torch augment + finalize (1e-6)."""
    plan, raw = _plan(), _raw()
    d = aug.draw(np.random.default_rng(3), N, aug.OPS, (0.5, 0.9))
    host = {**raw, **{g: aug.apply(raw[g], d) for g in ("a10", "a20", "b")}}
    dev = _torch(raw)
    dev.update({g: aug.apply_torch(dev[g], _as_torch(d)) for g in ("a10", "a20", "b")})
    want, got = finalize_batch(host, plan), finalize_batch(dev, plan)
    assert set(want) == set(got)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-6)


def test_sync_desync_ops_and_dropping_on_device() -> None:
    plan = DecodePlan(tuple(ModalityPlan(n, (GroupPlan(n, (2, S, S), "uint16"),), ("x", "y"),
                                         (0.0, 0.0), (1.0, 1.0)) for n in ("a", "b")),
                      3, S, "bilinear")
    img = torch.from_numpy(_raw()["a10"])
    batch = {"label": torch.rand(N, 3), "a": img, "b": img.clone(),
             "drop_a": torch.zeros(N, dtype=torch.uint8),
             "drop_b": torch.zeros(N, dtype=torch.uint8)}
    gen = device_generator(CPU, 0)
    same = augment_device(batch, plan, generator=gen, crop_scale=(0.5, 0.8))
    assert torch.equal(same["a"], same["b"]) and not torch.equal(same["a"], img)
    assert torch.equal(same["label"], batch["label"])  # float targets untouched
    apart = augment_device(batch, plan, generator=gen, desync=True, crop_scale=(0.5, 0.8))
    assert all(not torch.equal(apart["a"][i], apart["b"][i]) for i in range(N))
    # per-modality ops: b gets nothing, a only horizontal flips (GLOBE horizon photos)
    ops = augment_device(batch, plan, generator=gen, desync=True,
                         ops={"a": ("hflip",), "b": ()})
    assert torch.equal(ops["b"], img)
    for i in range(N):
        assert torch.equal(ops["a"][i], img[i]) or torch.equal(ops["a"][i], img[i].flip(-1))
    assert any(not torch.equal(ops["a"][i], img[i]) for i in range(N))
    dropped = augment_device(batch, plan, generator=gen, modality_dropout=0.999,
                             ops={"a": (), "b": ()})
    assert ((dropped["drop_a"] + dropped["drop_b"]) == 1).all()  # one of two, never both
    assert batch["drop_a"].sum() == 0  # the input batch is not changed


def test_segmentation_mask_moves_with_the_image_on_device() -> None:
    plan = _plan("segmentation")
    batch = _torch(_raw(task="segmentation"))
    blocks = torch.randint(0, 5, (N, S // 4, S // 4), generator=torch.Generator().manual_seed(0))
    batch["label"] = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2).to(torch.uint8)
    # the image *is* the mask, so they must stay aligned (desync is ignored for segmentation)
    batch["a10"] = batch["label"].to(torch.int32)[:, None].repeat(1, 2, 1, 1).to(torch.uint16)
    for crop, agree in (([1.0, 1.0], 1.0), ([0.5, 0.9], 0.75)):
        kw = augment_kwargs(DataConfig(crop_scale=crop, desync_augment=True))
        out = augment_device(batch, plan, generator=device_generator(CPU, 1), **kw)
        assert not torch.equal(out["label"], batch["label"])
        for c in range(2):  # bilinear image vs nearest mask differ only at block edges
            same = (out["a10"][:, c].to(torch.int32) == out["label"].to(torch.int32))
            assert same.float().mean().item() >= agree


class _Shard:
    """What ``ray.train.get_dataset_shard`` offers, over NumPy arrays (read-only views)."""

    def __init__(self, rows: dict[str, np.ndarray]) -> None:
        self.rows = rows
        for v in rows.values():
            v.flags.writeable = False

    def iter_batches(self, *, batch_format: str, batch_size: int, **_: object):
        n = len(self.rows["label"])
        for s in range(0, n, batch_size):
            yield {k: v[s:s + batch_size] for k, v in self.rows.items()}


def test_resident_split_epochs_permute_every_row_once() -> None:
    raw = _raw()
    raw["label"] = np.arange(N, dtype=np.float32)[:, None].repeat(3, 1)  # row ids
    resident = ResidentSplit.load(_Shard(raw), CPU)
    assert resident.rows == N and resident.tensors["a10"].dtype == torch.uint16
    plan, gen = _plan(), device_generator(CPU, 0)
    orders = []
    for _ in range(2):
        batches = list(model_batches(None, plan, batch_size=10, device=CPU, resident=resident,
                                     augment=augment_kwargs(DataConfig()), generator=gen))
        assert [b.data["label"].shape[0] for b in batches] == [10, 10, 10, 2]
        ids = torch.cat([b.data["label"][:, 0] for b in batches]).long()
        assert sorted(ids.tolist()) == list(range(N))
        orders.append(ids)
        assert batches[0].data["a"].shape == (10, 3, S, S) and batches[0].nbytes["a"] > 0
    assert not torch.equal(orders[0], orders[1])


def test_resident_split_refuses_what_does_not_fit() -> None:
    with pytest.raises(ConfigError, match=r"data\.cache=device.*GiB free"):
        ResidentSplit.load(_Shard(_raw()), CPU, free_bytes=10_000)


def test_where_augmentation_runs() -> None:
    assert resolve_augment_on("auto", torch.device("cuda")) == "device"
    assert resolve_augment_on("auto", CPU) == "host"
    assert resolve_augment_on("auto", CPU, resident=True) == "device"
    assert resolve_augment_on("device", CPU) == "device"
    with pytest.raises(ConfigError, match="augment_on=host"):
        DataConfig(cache="device", augment_on="host").validate()
