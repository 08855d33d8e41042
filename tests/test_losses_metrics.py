"""Losses, metrics, optimisers / schedules and checkpoints of rsray.train."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rsray.config import OptimConfig, TrainConfig
from rsray.errors import RsrayError
from rsray.train.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from rsray.train.losses import CombinedLoss, SoftDiceLoss, WeightedBCEWithLogits, build_loss
from rsray.train.metrics import MultilabelMetrics
from rsray.train.optim import TriangularLR, build_optimizer, build_scheduler


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- losses

LOGITS = torch.tensor([[0.0, 2.0, -1.0], [-1.5, 3.0, 0.5]])
TARGET = torch.tensor([[1, 0, 0], [0, 1, 1]])


def _manual_wbce(beta: float) -> float:
    total = 0.0
    for x, y in zip(LOGITS.flatten().tolist(), TARGET.flatten().tolist(), strict=True):
        p = _sig(x)
        total += beta * y * math.log(p) + (1 - beta) * (1 - y) * math.log(1 - p)
    return -total / LOGITS.numel()


def _manual_dice(smooth: float) -> float:
    dices = []
    for c in range(LOGITS.shape[1]):
        ps = [_sig(v) for v in LOGITS[:, c].tolist()]
        ys = TARGET[:, c].tolist()
        inter = sum(p * y for p, y in zip(ps, ys, strict=True))
        dices.append((2 * inter + smooth) / (sum(ps) + sum(ys) + smooth))
    return 1 - sum(dices) / len(dices)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_weighted_bce_matches_hand_computation(beta: float) -> None:
    loss = WeightedBCEWithLogits(beta)(LOGITS, TARGET)
    assert loss.item() == pytest.approx(_manual_wbce(beta), rel=1e-6)


def test_weighted_bce_half_is_half_standard_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 5, 4, 4) * 3
    target = (torch.rand(8, 5, 4, 4) > 0.5).float()
    standard = nn.functional.binary_cross_entropy_with_logits(logits, target)
    weighted = WeightedBCEWithLogits(0.5)(logits, target)
    torch.testing.assert_close(weighted, 0.5 * standard)


def test_dice_matches_hand_computation() -> None:
    for smooth in (0.0, 1.0):
        loss = SoftDiceLoss(smooth)(LOGITS, TARGET)
        assert loss.item() == pytest.approx(_manual_dice(smooth), rel=1e-6)


def test_dice_bounds_and_extremes() -> None:
    torch.manual_seed(1)
    dice = SoftDiceLoss()
    for _ in range(20):
        logits = torch.randn(6, 4, 3, 3) * 5
        target = torch.rand(6, 4, 3, 3) > 0.5
        value = dice(logits, target).item()
        assert 0.0 <= value <= 1.0
    target = torch.tensor([[1, 0], [0, 1], [1, 1]])
    perfect = torch.where(target.bool(), 50.0, -50.0)
    assert dice(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = -perfect
    # class 0: (0 + 1) / (1 + 2 + 1) ; class 1 the same -> 1 - 0.25
    assert dice(wrong, target).item() == pytest.approx(0.75, abs=1e-6)


def test_dice_robust_to_absent_class() -> None:
    target = torch.tensor([[1, 0], [1, 0], [0, 0]])  # class 1 absent from the batch
    logits = torch.where(target.bool(), 20.0, -20.0).requires_grad_()
    for smooth in (0.0, 1.0):
        loss = SoftDiceLoss(smooth)(logits, target)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        logits.grad = None
    # with smoothing a correctly silent absent class costs nothing
    assert SoftDiceLoss(1.0)(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    # ... and predicting it anyway is penalised
    loud = logits.detach().clone()
    loud[:, 1] = 5.0
    assert SoftDiceLoss(1.0)(loud, target).item() > 0.3


def test_combined_loss_limits_and_mix() -> None:
    bce = WeightedBCEWithLogits(0.7)(LOGITS, TARGET)
    dice = SoftDiceLoss(1.0)(LOGITS, TARGET)
    torch.testing.assert_close(CombinedLoss(alpha=1.0, beta=0.7)(LOGITS, TARGET), bce)
    torch.testing.assert_close(CombinedLoss(alpha=0.0, beta=0.7)(LOGITS, TARGET), dice)
    torch.testing.assert_close(
        CombinedLoss(alpha=0.3, beta=0.7)(LOGITS, TARGET), 0.3 * bce + 0.7 * dice
    )


@pytest.mark.parametrize(
    "loss_fn",
    [WeightedBCEWithLogits(0.8), SoftDiceLoss(), CombinedLoss(0.5, 0.6), SoftDiceLoss(0.0)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_finite_on_extreme_logits(loss_fn: nn.Module, dtype: torch.dtype) -> None:
    target = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0]])
    raw = torch.tensor([[-50.0, 50.0, 50.0, -50.0], [50.0, -50.0, -50.0, 50.0]], dtype=dtype)
    logits = raw.requires_grad_()
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad.float()).all()
    if isinstance(loss_fn, WeightedBCEWithLogits):  # 3 positives, 3 negatives wrong by 50
        assert loss.item() == pytest.approx((3 * 0.8 * 50 + 3 * 0.2 * 50) / 8, rel=1e-3)


def test_loss_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        WeightedBCEWithLogits()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_build_loss() -> None:
    bce = build_loss(TrainConfig(loss="bce"))
    assert isinstance(bce, nn.BCEWithLogitsLoss)
    expected = nn.functional.binary_cross_entropy_with_logits(LOGITS, TARGET.float())
    torch.testing.assert_close(bce(LOGITS, TARGET), expected)  # int targets accepted
    combined = build_loss(TrainConfig(loss="combined", loss_alpha=0.25, loss_beta=0.9))
    assert isinstance(combined, CombinedLoss)
    assert combined.alpha == 0.25
    assert combined.bce.beta == 0.9


# --------------------------------------------------------------------------- metrics

NAMES = ["snow", "leaves", "water"]


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.double()).float()


def test_metrics_perfect_predictions() -> None:
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    logits = torch.where(target.bool(), 4.0, -4.0)
    m = MultilabelMetrics(3, NAMES)
    m.update(logits, target)
    out = m.compute()
    assert out["ap_micro"] == pytest.approx(1.0)
    assert out["ap_macro"] == pytest.approx(1.0)
    assert out["f2_micro"] == pytest.approx(1.0)
    assert out["hamming_loss"] == pytest.approx(0.0)
    toolbox = {"f1_micro", "acc_micro", "oa", "aa"}
    assert set(out) == {"ap_micro", "ap_macro", "f2_micro", "hamming_loss"} | toolbox | {
        f"ap_class/{n}" for n in NAMES
    } | {f"acc_class/{n}" for n in NAMES}
    assert all(out[k] == pytest.approx(1.0) for k in toolbox)
    assert all(isinstance(v, float) for v in out.values())


def test_metrics_hand_checked_values() -> None:
    # class 0: scores .9 .8 .3 .1, targets 1 0 1 0 -> AP = .5 * 1 + .5 * 2/3
    # class 1: scores .2 .7 .6 .4, targets 0 1 1 0 -> ranking perfect, AP = 1
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4]])
    target = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = MultilabelMetrics(2, ["a", "b"])
    m.update(_logit(probs), target)
    out = m.compute()
    ap0 = 0.5 * 1.0 + 0.5 * (2 / 3)
    assert out["ap_class/a"] == pytest.approx(ap0, abs=1e-5)
    assert out["ap_class/b"] == pytest.approx(1.0, abs=1e-5)
    assert out["ap_macro"] == pytest.approx((ap0 + 1.0) / 2, abs=1e-5)
    # thresholded at 0.5: a -> 1 1 0 0 (tp 1, fp 1, fn 1); b -> 0 1 1 0 (tp 2)
    tp, fp, fn = 3, 1, 1
    f2 = 5 * tp / (5 * tp + 4 * fn + fp)
    assert out["f2_micro"] == pytest.approx(f2, abs=1e-6)
    assert out["hamming_loss"] == pytest.approx((fp + fn) / 8, abs=1e-6)
    # micro AP: all 8 scores pooled; positives at ranks 1 (.9), 2 (.7), 4 (.6) of
    # .9 .8 .7 .6 .4 .3 .2 .1 and .3 at rank 6 -> precisions 1, 2/3, 3/4, 4/6
    micro = (1 + 2 / 3 + 3 / 4 + 4 / 6) / 4
    assert out["ap_micro"] == pytest.approx(micro, abs=1e-5)


def test_metrics_apply_sigmoid_even_when_logits_look_like_probabilities() -> None:
    # logits 0.2 -> p = 0.55 (predicted positive); read as a probability it would be negative
    target = torch.tensor([[1, 1], [1, 1]])
    logits = torch.tensor([[0.2, 0.3], [0.1, 0.4]])
    m = MultilabelMetrics(2)
    m.update(logits, target)
    out = m.compute()
    assert out["hamming_loss"] == pytest.approx(0.0)
    assert out["f2_micro"] == pytest.approx(1.0)
    assert "ap_class/class_0" in out


def test_metrics_class_without_positives_is_nan_and_skipped() -> None:
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.8, 0.7, 0.1], [0.3, 0.6, 0.3], [0.1, 0.4, 0.2]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])  # water never present
    m = MultilabelMetrics(3, NAMES)
    m.update(_logit(probs), target)
    out = m.compute()
    assert math.isnan(out["ap_class/water"])
    ap0 = 0.5 * 1.0 + 0.5 * (2 / 3)
    assert out["ap_macro"] == pytest.approx((ap0 + 1.0) / 2, abs=1e-5)
    for key in ("ap_micro", "f2_micro", "hamming_loss"):
        assert math.isfinite(out[key])


def test_metrics_no_positives_at_all() -> None:
    m = MultilabelMetrics(2)
    m.update(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.long))
    out = m.compute()
    assert math.isnan(out["ap_macro"])
    assert math.isnan(out["ap_class/class_1"])


def test_metrics_accumulate_and_reset() -> None:
    torch.manual_seed(3)
    logits = torch.randn(40, 3)
    target = (torch.rand(40, 3) > 0.6).long()
    target[0] = 1
    whole = MultilabelMetrics(3)
    whole.update(logits, target)
    batched = MultilabelMetrics(3).to("cpu")
    for i in range(0, 40, 7):
        batched.update(logits[i : i + 7], target[i : i + 7].float())  # float targets too
    a, b = whole.compute(), batched.compute()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-6)
    batched.reset()
    batched.update(logits[:5], torch.ones(5, 3))
    assert batched.compute()["ap_micro"] == pytest.approx(1.0)


def test_metrics_validate_arguments() -> None:
    with pytest.raises(ValueError, match="names"):
        MultilabelMetrics(3, ["a", "b"])
    m = MultilabelMetrics(3)
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(2, 4), torch.zeros(2, 4))


def _ddp_metrics_worker(rank: int, world: int, init_file: str, queue: mp.Queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(7)
        logits = torch.randn(30, 3, generator=g)
        target = (torch.rand(30, 3, generator=g) > 0.5).long()
        target[:, 2] = 0
        target[0, 2] = 1  # the only positive of class 2 lives on rank 0
        m = MultilabelMetrics(3)
        m.update(logits[rank::world], target[rank::world])
        queue.put((rank, m.compute()))
    finally:
        dist.destroy_process_group()


def test_metrics_sync_across_ddp_ranks(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(30, 3, generator=g)
    target = (torch.rand(30, 3, generator=g) > 0.5).long()
    target[:, 2] = 0
    target[0, 2] = 1
    single = MultilabelMetrics(3)
    single.update(logits, target)
    expected = single.compute()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_ddp_metrics_worker, args=(r, 2, str(tmp_path / "init"), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in (0, 1):  # rank 1 alone has no positive of class 2, yet gets the global AP
        for k, v in expected.items():
            assert results[rank][k] == pytest.approx(v, abs=1e-6), (rank, k)


# --------------------------------------------------------------------------- optimisers


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.proj = nn.Linear(4, 6, bias=False)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 2)
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 6))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).mean(dim=(2, 3))
        return self.head(self.norm(self.proj(h)) + self.pos_embed.mean())


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)],
)
def test_optimizer_param_groups(name: str, cls: type[torch.optim.Optimizer]) -> None:
    model = _TinyNet()
    opt = build_optimizer(model, OptimConfig(name=name, lr=3e-4, weight_decay=0.05))
    assert isinstance(opt, cls)
    ids = {id(p): n for n, p in model.named_parameters()}
    decayed = {ids[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {ids[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {"conv.weight", "proj.weight", "head.weight"}
    assert plain == {
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "norm.weight",
        "norm.bias",
        "head.bias",
        "pos_embed",
    }
    assert all(g["lr"] == 3e-4 for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_optimizer_sees_through_wrappers(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        model = _TinyNet()
        ddp = nn.parallel.DistributedDataParallel(model)
        assert unwrap_model(ddp) is model
        opt = build_optimizer(ddp, OptimConfig(weight_decay=0.1))
        assert len(opt.param_groups[0]["params"]) == 3
        assert len(opt.param_groups[1]["params"]) == 7  # pos_embed found despite "module."
        save_checkpoint(
            tmp_path / "ck",
            model=ddp,
            optimizer=opt,
            scheduler=None,
            epoch=0,
            best_metric=None,
            extra={},
        )
        state = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
        assert not any(k.startswith("module.") for k in state["model"])
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- schedulers


def _lrs(scheduler_name: str, epochs: int, **kw: float) -> list[float]:
    cfg = OptimConfig(name="adam", lr=1.0, scheduler=scheduler_name, **kw)
    model = nn.Linear(2, 1)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, max_epochs=epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(g["lr"] == opt.param_groups[0]["lr"] for g in opt.param_groups)
    return out


def test_step_schedule() -> None:
    lrs = _lrs("step", 7, step_size=2, gamma=0.5)
    assert lrs == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])


def test_cyclic_schedule() -> None:
    lrs = _lrs("cyclic", 9, step_size=2, cyclic_min_ratio=0.1)
    assert lrs == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 0.55, 1.0, 0.55, 0.1])
    lrs5 = _lrs("cyclic", 11, step_size=5, cyclic_min_ratio=0.2)  # the paper's 5-epoch cycle
    assert lrs5[0] == pytest.approx(0.2)
    assert lrs5[5] == pytest.approx(1.0)
    assert lrs5[10] == pytest.approx(0.2)
    assert lrs5[:6] == sorted(lrs5[:6])


def test_cosine_schedule() -> None:
    lrs = _lrs("cosine", 10)
    assert lrs[0] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[5] == pytest.approx(0.5)
    assert lrs[-1] < 0.03


def test_no_schedule() -> None:
    cfg = OptimConfig(scheduler="none")
    opt = build_optimizer(nn.Linear(2, 1), cfg)
    assert build_scheduler(opt, cfg, max_epochs=3) is None


def test_triangular_factor_is_picklable_state() -> None:
    cfg = OptimConfig(scheduler="cyclic", step_size=3, cyclic_min_ratio=0.25)
    opt = build_optimizer(nn.Linear(2, 1), cfg)
    sched = build_scheduler(opt, cfg, max_epochs=10)
    assert sched.state_dict()["lr_lambdas"][0] == {"min_ratio": 0.25, "half_cycle": 3}
    assert TriangularLR(0.25, 3)(3) == pytest.approx(1.0)


# --------------------------------------------------------------------------- checkpoints


def _train_steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 3, 6, 6, generator=g)
        y = (torch.rand(4, 2, generator=g) > 0.5).float()
        loss = CombinedLoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _build(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, object, OptimConfig]:
    torch.manual_seed(seed)
    cfg = OptimConfig(name="adam", lr=1e-2, scheduler="cyclic", step_size=2)
    model = _TinyNet()
    opt = build_optimizer(model, cfg)
    return model, opt, build_scheduler(opt, cfg, max_epochs=6), cfg


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model, opt, sched, _ = _build(0)
    for epoch in range(3):
        _train_steps(model, opt, 2, seed=epoch)
        sched.step()
    extra = {
        "metrics": {"val_ap_macro": np.float32(0.75), "val_loss": 0.3, "nan": float("nan")},
        "config": {"lr": 1e-2, "path": tmp_path},
        "counts": np.arange(3),
    }
    save_checkpoint(
        tmp_path / "ck",
        model=model,
        optimizer=opt,
        scheduler=sched,
        epoch=2,
        best_metric=0.75,
        extra=extra,
    )
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    save_checkpoint(
        tmp_path / "ck2",
        model=model,
        optimizer=opt,
        scheduler=sched,
        epoch=2,
        best_metric=0.75,
        extra={},
    )
    expected_draws = (random.random(), np.random.rand(), torch.rand(2))

    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())
    assert meta["epoch"] == 2
    assert meta["best_metric"] == 0.75
    assert meta["metrics"]["val_ap_macro"] == pytest.approx(0.75)
    assert meta["metrics"]["nan"] is None

    model2, opt2, sched2, _ = _build(1)
    assert not torch.equal(model2.conv.weight, model.conv.weight)
    info = load_checkpoint(tmp_path / "ck2", model=model2, optimizer=opt2, scheduler=sched2)
    assert (random.random(), np.random.rand()) == expected_draws[:2]
    assert torch.equal(torch.rand(2), expected_draws[2])
    info = load_checkpoint(
        tmp_path / "ck", model=model2, optimizer=opt2, scheduler=sched2, restore_rng=False
    )
    assert info["epoch"] == 2
    assert info["best_metric"] == 0.75
    assert info["extra"]["metrics"]["val_ap_macro"] == pytest.approx(0.75)
    assert torch.equal(info["extra"]["counts"], torch.arange(3))

    for (k, a), (k2, b) in zip(
        model.state_dict().items(), model2.state_dict().items(), strict=True
    ):
        assert k == k2
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid, st in s1["state"].items():
        for key, value in st.items():
            assert torch.equal(value, s2["state"][pid][key]), (pid, key)
    assert sched2.last_epoch == sched.last_epoch == 3
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())

    # training on from both gives the same weights
    sched.step()
    sched2.step()
    _train_steps(model, opt, 2, seed=42)
    _train_steps(model2, opt2, 2, seed=42)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_truncated_or_corrupt_names_file(tmp_path: Path) -> None:
    model, opt, sched, _ = _build(0)
    save_checkpoint(
        tmp_path, model=model, optimizer=opt, scheduler=sched, epoch=0, best_metric=None, extra={}
    )
    state = tmp_path / "state.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    with pytest.raises(RsrayError, match=r"state\.pt.*(truncated or corrupt)") as err:
        load_checkpoint(tmp_path, model=_TinyNet())
    assert str(state) in str(err.value)
    state.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RsrayError, match="corrupt"):
        load_checkpoint(tmp_path, model=_TinyNet())
    state.unlink()
    with pytest.raises(RsrayError, match="not found"):
        load_checkpoint(tmp_path, model=_TinyNet())


def test_checkpoint_rejects_wrong_model_and_bad_extra(tmp_path: Path) -> None:
    model, opt, sched, _ = _build(0)
    save_checkpoint(
        tmp_path, model=model, optimizer=opt, scheduler=sched, epoch=0, best_metric=None, extra={}
    )
    with pytest.raises(RsrayError, match="do not fit the model"):
        load_checkpoint(tmp_path, model=nn.Linear(2, 2))
    with pytest.raises(RsrayError, match=r"extra\['obj'\]"):
        save_checkpoint(
            tmp_path / "bad",
            model=model,
            optimizer=None,
            scheduler=None,
            epoch=0,
            best_metric=None,
            extra={"obj": object()},
        )


def test_multilabel_sen12ms_toolbox_metrics_by_hand():
    """The SEN12MS toolbox's multi-label OA/AA/micro metrics, computed by hand from its formulas.

    P (predicted at 0.5) and T per sample: {0}/{0}, {0,1}/{1}, {}/{2}, {1,2}/{1}.
    Class-wise (TP + TN) / N: 3/4, 4/4, 2/4 -> AA 0.75; micro accuracy 9/12; sample-wise OA
    = mean(1/1, 1/2, 0/1, 1/2) = 0.5; TP 3, FP 2, FN 1 -> F1 6/9, F2 15/21, Hamming 3/12.
    """
    import torch

    from rsray.train.metrics import MultilabelMetrics

    pred = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    logits = torch.where(pred.bool(), 3.0, -3.0)
    m = MultilabelMetrics(3, ["a", "b", "c"])
    m.update(logits[:2], target[:2])  # two batches: the states accumulate
    m.update(logits[2:], target[2:])
    out = m.compute()
    assert out["acc_class/a"] == pytest.approx(0.75)
    assert out["acc_class/b"] == pytest.approx(1.0)
    assert out["acc_class/c"] == pytest.approx(0.5)
    assert out["aa"] == pytest.approx(0.75)
    assert out["acc_micro"] == pytest.approx(9 / 12)
    assert out["oa"] == pytest.approx(0.5)
    assert out["f1_micro"] == pytest.approx(6 / 9)
    assert out["f2_micro"] == pytest.approx(15 / 21)
    assert out["hamming_loss"] == pytest.approx(3 / 12)


def test_multilabel_sample_oa_counts_an_empty_sample_as_agreement():
    import torch

    from rsray.train.metrics import MultilabelMetrics

    m = MultilabelMetrics(2)
    m.update(torch.tensor([[-3.0, -3.0], [3.0, -3.0]]), torch.tensor([[0, 0], [1, 1]]))
    assert m.compute()["oa"] == pytest.approx((1.0 + 0.5) / 2)
