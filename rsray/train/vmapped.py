"""K runs of one configuration trained in lock-step as one vectorised step (``torch.func.vmap``).

The seeds of a study cell differ only in their seed: the same model family, data and
optimiser. :func:`train_lockstep` trains K such runs (:class:`~rsray.train.loop.RunSession`,
each set up exactly as its separate run: its own seed, initialisation, optimiser, scheduler,
checkpoints and batch iterator with its own order, augmentation and modality dropout) one
epoch at a time. Per step each run draws its own next batch; runs whose batches have the same
shapes are stepped together: their parameters are stacked (``torch.stack`` of the live
parameters, so the gradient of the stacked copy lands in each run's own ``.grad``), the
model is called once per run under ``torch.func.vmap(functional_call)`` (``randomness=
"different"``: each run draws its own dropout and drop-path masks), the K losses are summed
and back-propagated in one backward pass, and each run clips its gradients and steps its
own optimiser. A run whose batch differs in shape (the split's short last batch) is stepped
alone, as its separate run would; a run whose epochs are over (its batch iterator ended, its
early stopping fired) drops out. Evaluation, report, checkpoint and early stopping are each
run's own (:meth:`~rsray.train.loop.RunSession.end_epoch`).

Only models without state updated in training qualify (:func:`vectorisable`): BatchNorm's
running statistics are buffers written in the forward pass, which ``functional_call`` over
stacked buffers would not hand back to each run. Vectorising changes the order of floating
point reductions (batched matrix products), so a vectorised run equals its separate run to
rounding, growing slowly with the steps, rather than bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, vmap

from rsray.train.batches import Batch
from rsray.train.local import LocalRun, local_result
from rsray.train.loop import RunSession
from rsray.train.run_plan import WorkerInput
from rsray.train.step import EpochStats, StepWindow, autocast, model_inputs

TELEMETRY_EVERY_N_STEPS = 5
"""Steps of one run aggregated into one telemetry update (as :mod:`rsray.train.step`)."""


def vectorisable(model: torch.nn.Module) -> str | None:
    """``None`` when K copies of ``model`` can train as one vectorised step, else the reason.

    A module that writes its buffers in training (BatchNorm's, or InstanceNorm's with
    ``track_running_stats``, running statistics) does not qualify.
    """
    for name, module in model.named_modules():
        norm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or (
            isinstance(module, torch.nn.modules.instancenorm._InstanceNorm)
            and module.track_running_stats)
        if norm:
            return (f"{type(module).__name__} at {name or 'the top'} updates running "
                    "statistics in training")
    if not any(p.requires_grad for p in model.parameters()):
        return "no trainable parameter"
    return None


@dataclass
class _Progress:
    """One run's share of a lock-step epoch."""

    samples: int = 0
    wait: float = 0.0
    first: float = 0.0
    steps: int = 0
    window: StepWindow = field(default_factory=StepWindow)
    loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))


class _PatchConv(torch.nn.Conv2d):
    """A patch embedding's convolution (kernel = stride, no padding) as one matrix product.

    Same parameters and result (to rounding) as the convolution it replaces; under ``vmap``
    the product batches into one ``bmm``, where the convolution became a grouped convolution
    that made a vectorised step of three ``vit_early_fusion_small`` 1.6x slower on a 2-core
    CPU (0.68 s against 0.43 s, measured).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D, H // p, W // p), as the convolution (a remainder is dropped)."""
        p = self.kernel_size[0]
        b, c, hh, ww = x.shape
        h, w = hh // p, ww // p
        x = x[..., :h * p, :w * p]
        t = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p)
        out = torch.nn.functional.linear(t, self.weight.reshape(self.weight.shape[0], -1),
                                         self.bias)
        return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def _template(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose patch convolutions are :class:`_PatchConv` (for ``vmap``)."""
    import copy

    out = copy.deepcopy(model)
    for module in out.modules():
        if (type(module) is torch.nn.Conv2d and module.kernel_size == module.stride
                and module.kernel_size[0] == module.kernel_size[1]
                and module.padding == (0, 0) and module.dilation == (1, 1)
                and module.groups == 1):
            module.__class__ = _PatchConv
    return out


def _signature(inputs: dict[str, Any], target: torch.Tensor) -> tuple[Any, ...]:
    """Shapes and dtypes of one step's inputs: runs with equal signatures are stacked."""
    return (tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items())),
            tuple(target.shape), target.dtype)


def _after_step(s: RunSession, p: _Progress, loss: torch.Tensor, n: int, seconds: float,
                wait: float, epoch: int) -> None:
    """Clip and step ``s``'s optimiser, then fold the step into its loss and telemetry."""
    cfg = s.cfg
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), cfg.optim.grad_clip)
    s.optimizer.step()
    s.train_loss.update(loss.detach(), weight=n)
    p.samples += n
    p.steps += 1
    p.loss = loss.detach()
    p.window.add(n, seconds, wait)
    if p.window.steps >= TELEMETRY_EVERY_N_STEPS:
        p.window.flush(s.telemetry, p.loss, s.optimizer.param_groups[0]["lr"])
    if s.rank == 0 and p.steps % cfg.train.log_every_n_steps == 0:
        print(f"[rsray] {s.run.trial or 'run'} epoch {epoch + 1} step {p.steps} loss "
              f"{float(p.loss):.4f}", flush=True)


def _step_alone(s: RunSession, item: Batch, p: _Progress, wait: float, epoch: int) -> None:
    """One step of one run, as :func:`~rsray.train.step.train_one_epoch` takes it."""
    t0 = time.perf_counter()
    batch = item.data
    target = s.task.target(batch)
    with autocast(s.device, s.cfg.train.amp):
        logits = s.model(model_inputs(batch, s.modalities))
    if p.steps == 0:
        s.task.check_output(logits, target, s.cfg.model.name)
    loss = s.task.loss(logits.float(), target)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _after_step(s, p, loss, target.shape[0], time.perf_counter() - t0 + wait, wait, epoch)


def _step_together(group: list[tuple[RunSession, dict[str, Any], torch.Tensor, _Progress,
                                     float]], template: torch.nn.Module,
                   epoch: int) -> str | None:
    """One vectorised step of the runs in ``group`` (same input shapes), each its own loss.

    ``template``: the module whose forward runs with each run's parameters (:func:`_template`).
    Returns why the model cannot run under ``vmap`` (nothing was stepped then), else ``None``.
    """
    t0 = time.perf_counter()
    sessions = [g[0] for g in group]
    first = sessions[0]
    names = [n for n, _ in template.named_parameters()]
    own = [dict(s.model.named_parameters()) for s in sessions]
    params = {n: torch.stack([o[n] for o in own]) for n in names}  # grads reach each run
    bufs = [dict(s.model.named_buffers()) for s in sessions]
    buffers = {n: torch.stack([b[n] for b in bufs]) for n in bufs[0]}
    inputs = {k: torch.stack([g[1][k] for g in group]) for k in group[0][1]}
    targets = torch.stack([g[2] for g in group])
    task = first.task

    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: dict[str, Any],
            y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = functional_call(template, (p, b), (x,))
        return task.loss(logits.float(), y), logits

    try:
        with autocast(first.device, first.cfg.train.amp):
            losses, logits = vmap(one, randomness="different")(params, buffers, inputs,
                                                                targets)
    except RuntimeError as exc:  # e.g. the model branches on a tensor's value for this batch
        return str(exc).splitlines()[0][:200]
    for s, g, lg in zip(sessions, group, logits, strict=True):
        if g[3].steps == 0:
            s.task.check_output(lg, g[2], s.cfg.model.name)
        s.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    seconds = time.perf_counter() - t0
    for k, (s, _, y, p, wait) in enumerate(group):
        _after_step(s, p, losses[k], y.shape[0], seconds + wait, wait, epoch)
    return None


@dataclass
class Lockstep:
    """Whether a pack still vectorises, and why not.

    A model that cannot run under ``vmap`` (it branches on a tensor's value, e.g. a token
    mask skipped when every modality is present) makes every later step run seed by seed.
    """

    vectorise: bool = True
    reason: str = ""


def train_epoch_together(sessions: list[RunSession], epoch: int,
                         lockstep: Lockstep | None = None) -> list[EpochStats]:
    """One training epoch of every run in ``sessions``, vectorised where shapes agree.

    ``lockstep``: the pack's state across epochs (:class:`Lockstep`).
    """
    lockstep = lockstep or Lockstep()
    t0 = time.perf_counter()
    progress = [_Progress() for _ in sessions]
    for s in sessions:
        s.model.train()
        s.train_loss.reset()
    template = _template(sessions[0].model)
    iters = [s.batches() for s in sessions]
    live = list(range(len(sessions)))
    try:
        while live:
            drawn = []
            for i in live:
                t_wait = time.perf_counter()
                item = next(iters[i], None)
                wait = time.perf_counter() - t_wait
                progress[i].wait += wait
                if progress[i].steps == 0 and item is not None:
                    progress[i].first = time.perf_counter() - t0
                if item is not None:
                    drawn.append((i, item, wait))
            live = [i for i, _, _ in drawn]
            groups: dict[tuple[Any, ...], list[Any]] = {}
            for i, item, wait in drawn:
                s = sessions[i]
                for name, nbytes in item.nbytes.items():
                    s.telemetry.bytes_read(name, nbytes)
                inputs = model_inputs(item.data, s.modalities)
                target = s.task.target(item.data)
                groups.setdefault(_signature(inputs, target), []).append(
                    (i, item, inputs, target, wait))
            for members in groups.values():
                if len(members) > 1 and lockstep.vectorise:
                    why = _step_together([(sessions[i], x, y, progress[i], wait)
                                          for i, _, x, y, wait in members], template, epoch)
                    if why is None:
                        continue
                    lockstep.vectorise, lockstep.reason = False, why
                    print(f"[rsray] {sessions[0].cfg.model.name} cannot run under vmap "
                          f"({why}); these seeds train one after another from here",
                          flush=True)
                for i, item, _, _, wait in members:
                    _step_alone(sessions[i], item, progress[i], wait, epoch)
    finally:
        for it in iters:
            it.close()
    seconds = time.perf_counter() - t0
    out = []
    for s, p in zip(sessions, progress, strict=True):
        if p.window.steps:
            p.window.flush(s.telemetry, p.loss, s.optimizer.param_groups[0]["lr"])
        out.append(EpochStats(float(s.train_loss.compute()), p.samples, seconds, p.wait,
                              p.first))
    return out


def train_lockstep(sessions: list[RunSession]) -> Lockstep:
    """Train ``sessions`` epoch by epoch together; each evaluates, reports and stops alone.

    A resumed run joins at the epoch after its checkpoint; a run that stopped early leaves.
    Returns whether the pack stayed vectorised (:class:`Lockstep`).
    """
    lockstep = Lockstep()
    try:
        starts = [s.epochs.start for s in sessions if not s.done]
        end = max((s.epochs.stop for s in sessions), default=0)
        for epoch in range(min(starts, default=end), end):
            active = [s for s in sessions if not s.done and epoch in s.epochs]
            if not active:
                continue
            t0 = time.perf_counter()
            stats = (train_epoch_together(active, epoch, lockstep) if len(active) > 1
                     else [active[0].train_epoch(epoch)])
            for s, st in zip(active, stats, strict=True):
                s.end_epoch(epoch, st, t0)
    finally:
        for s in sessions:
            s.close()
    return lockstep


@dataclass
class PackedRun:
    """One run of a vectorised pack: its input, its datasets and its run folder."""

    given: WorkerInput
    datasets: dict[str, Any]
    uri: str
    """The run folder (``<storage>/<name>``), as :func:`~rsray.train.local.run_local` uses."""
    on_report: Callable[[dict[str, Any]], None] | None = None
    """Receives each epoch's metrics (as :func:`~rsray.train.local.run_local`'s)."""


def run_packed(runs: list[PackedRun]) -> list[Any]:
    """Train ``runs`` in lock-step in this process (:func:`train_lockstep`); their results.

    Each run keeps its checkpoints in its own folder in the local-mode layout, so each
    result (``ray.train.Result``) is what its separate local run returns, and a run with
    checkpoints resumes from its newest.
    """
    sessions, lasts, locals_ = [], [], []
    for r in runs:
        cfg = r.given.run.config
        last: dict[str, Any] = {}

        def remember(metrics: dict[str, Any], last: dict[str, Any] = last,
                     hand_on: Callable[[dict[str, Any]], None] | None = r.on_report) -> None:
            last.clear()
            last.update(metrics)
            if hand_on is not None:
                hand_on(metrics)

        local = LocalRun(r.uri, cfg.train.num_to_keep, cfg.train.metric, cfg.train.mode,
                         remember)
        sessions.append(RunSession(r.given, local=local, shards=r.datasets))
        lasts.append(last)
        locals_.append(local)
    train_lockstep(sessions)
    return [local_result(local, last) for local, last in zip(locals_, lasts, strict=True)]
