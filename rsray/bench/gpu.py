"""The GPU benchmark: one short run that measures what a study costs on an accelerator.

Sections, in order, each under its own time limit inside a total budget (a section that runs
out is reported as timed out and the next one starts):

1. **models**: training samples/s (forward + backward + optimiser step, bf16 autocast on a GPU)
   and model FLOP utilisation (MFU: FLOPs per step counted by ``torch.utils.flop_counter``
   times steps per second, over the device's dense bf16 peak) of ``vit_sct_fusion`` at the
   thesis size and ``progressive_fusion_base`` / ``early_fusion_resnet50``, all at
   ``data.image_size`` (120 px) on synthetic BigEarthNet-MM batches;
2. **pipeline**: the input path's samples/s into the device (decode, augment, finalize) for a
   streamed split, a materialised split and ``data.cache=device``, against the GPU's rate for
   ``progressive_fusion_base`` (pipeline/GPU >= 1: the GPU is the bottleneck);
3. **trials**: the per-trial fixed cost (CUDA start-up included) of one-worker Tune trials in
   the trial's process (``local``) and through a ``TorchTrainer`` (``trainer``)
   (:mod:`rsray.bench.trials`);
4. **packing**: the same seeds of one ViT fusion configuration as one trial each, packed into
   one trial one after another, and packed as one vectorised step (``factors.pack_seeds``,
   ``factors.pack_mode``): wall time and seeds per hour of each.

``smoke=True`` shrinks everything (test models, 32 px, a few steps) so the whole run works
on a CPU in the test suite.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsray.config import Config, load_config

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 125.0, "A10": 125.0}
"""Dense bf16 tensor-core peak (TFLOP/s) by device name fragment (vendor data sheets)."""


@dataclass
class Sizes:
    """How big each section runs."""

    models: list[tuple[str, int]]
    """(model, batch size) of the models section."""
    pipeline_model: str
    image_size: int
    samples: int
    steps: int
    trial_model: str
    trials: dict[str, int]
    seeds: int
    pack_model: str
    """The packing section's model (BatchNorm-free, so its seeds can be vectorised)."""
    budgets: dict[str, float]
    """Seconds each section may take at most."""


FULL = Sizes(
    models=[("vit_sct_fusion", 256), ("progressive_fusion_base", 256),
            ("early_fusion_resnet50", 256)],
    pipeline_model="progressive_fusion_base", image_size=120, samples=1024, steps=20,
    trial_model="progressive_fusion_small", trials={"local": 4, "trainer": 3}, seeds=3,
    pack_model="vit_middle_fusion_small",
    budgets={"data": 150, "models": 90, "pipeline": 60, "trials": 150, "packing": 120})
SMOKE = Sizes(
    models=[("test_vit_sct_fusion", 4), ("test_progressive_fusion", 4),
            ("test_early_fusion_cnn", 4)],
    pipeline_model="test_progressive_fusion", image_size=32, samples=48, steps=2,
    trial_model="test_progressive_fusion", trials={"local": 1, "trainer": 1}, seeds=2,
    pack_model="test_vit_early_fusion",
    budgets={"data": 240, "models": 120, "pipeline": 120, "trials": 300, "packing": 300})


class SectionTimeoutError(Exception):
    """A section ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeoutError` in this (main) thread after ``seconds``."""
    def _raise(signum: int, frame: Any) -> None:
        raise SectionTimeoutError(f"over {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def peak_flops(device: torch.device) -> float:
    """The device's dense bf16 peak in FLOP/s, or NaN when unknown (a CPU)."""
    if device.type != "cuda":
        return math.nan
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return math.nan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_rate(cfg: Config, manifest: Any, name: str, batch_size: int, device: torch.device,
               steps: int) -> dict[str, float]:
    """Training samples/s of model ``name`` on ``device`` (bf16 on a GPU), FLOPs and MFU."""
    from torch.utils.flop_counter import FlopCounterMode

    from rsray.data.datasets import build_split
    from rsray.data.finalize import finalize_batch
    from rsray.models import create_model
    from rsray.train.batches import to_device
    from rsray.train.run_plan import RunPlan
    from rsray.train.step import autocast, model_inputs

    plan = RunPlan.build(cfg, manifest).train_plan
    raw = build_split(manifest, "train", plan).take_batch(
        min(batch_size, manifest.splits.get("train", batch_size)), batch_format="numpy")
    batch = finalize_batch(to_device({k: np.array(v) for k, v in raw.items()}, device), plan)
    reps = -(-batch_size // len(batch["label"]))
    batch = {k: torch.cat([v] * reps)[:batch_size] if torch.is_tensor(v) else v
             for k, v in batch.items()}
    extra = {"metadata_dim": plan.metadata_dim} if plan.metadata_dim else {}
    model = create_model(name, modalities=plan.channels, num_classes=len(manifest.classes),
                         **extra).to(device)
    modalities = tuple(getattr(model, "modalities", tuple(plan.channels)))
    inputs = model_inputs(batch, modalities)
    target = batch["label"].float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        with autocast(device, "bf16"):
            logits = model(inputs)
        loss = loss_fn(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, cuDNN autotuning
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = float(counter.get_total_flops())
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - t0
    rate = steps * batch_size / seconds
    achieved = flops * steps / seconds
    return {"samples_per_s": rate, "gflops_per_sample": flops / batch_size / 1e9,
            "tflops": achieved / 1e12, "mfu": achieved / peak_flops(device)}


def pipeline_rates(cfg: Config, manifest: Any, device: torch.device,
                   passes: int = 2) -> dict[str, dict[str, float]]:
    """Samples/s of the input path into ``device``, per route, last pass; its first batch."""
    from rsray.data.augment import augment_kwargs
    from rsray.data.datasets import build_split, cache_splits
    from rsray.train.batches import ResidentSplit, device_generator, model_batches
    from rsray.train.run_plan import RunPlan

    run = RunPlan.build(cfg.with_overrides({"data.cache": "memory"}), manifest)
    plan = run.train_plan
    stream = build_split(manifest, "train", plan, augment_with=augment_kwargs(cfg.data))
    cached = cache_splits(run.data, manifest, ["train"])["train"].dataset
    resident = ResidentSplit.load(cached, device)
    kwargs = augment_kwargs(cfg.data)
    routes: dict[str, Callable[[], Iterator[Any]]] = {
        "streaming": lambda: model_batches(stream, plan, batch_size=cfg.data.batch_size,
                                           device=device),
        "materialised": lambda: model_batches(
            cached, plan, batch_size=cfg.data.batch_size, device=device, augment=kwargs,
            rng=np.random.default_rng(0)),
        "cache=device": lambda: model_batches(
            None, plan, batch_size=cfg.data.batch_size, device=device, augment=kwargs,
            resident=resident, generator=device_generator(device, 0)),
    }
    out = {}
    for route, make in routes.items():
        for _ in range(passes):
            t0, n, first = time.perf_counter(), 0, math.nan
            for item in make():
                if math.isnan(first):
                    first = time.perf_counter() - t0
                n += int(item.data["label"].shape[0])
            _sync(device)
            seconds = time.perf_counter() - t0
        out[route] = {"samples_per_s": n / seconds, "first_batch_s": first}
    return out


@dataclass
class GpuBench:
    """What :func:`run_gpu_benchmark` measured; ``errors``: section -> why it has no figures."""

    device: str
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    pipeline: dict[str, dict[str, float]] = field(default_factory=dict)
    trials: dict[str, Any] = field(default_factory=dict)
    packing: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_gpu_benchmark(root: str | Path, *, smoke: bool = False, budget_s: float = 450.0,
                      sections: tuple[str, ...] = ("models", "pipeline", "trials", "packing"),
                      say: Callable[[str], None] = print, shards: str | None = None,
                      packing: Callable[[Config, Path, int], dict[str, float]] | None = None,
                      ) -> GpuBench:
    """Run the sections (see the module doc) within ``budget_s`` seconds in all.

    ``shards``: a BigEarthNet-MM shard set to use (default: synthetic ones made under
    ``root``). ``packing``: what measures packed against separate seeds
    (:func:`rsray.study.packing.time_packing`; the study layer sits above this one, so the
    caller hands it in); without it the packing section is reported as not run.
    """
    from rsray.data.datasets import load_shard_set
    from rsray.data.prepare import synthetic_shards
    from rsray.runtime import ensure_ray

    sizes = SMOKE if smoke else FULL
    root = Path(root).resolve()
    deadline = time.monotonic() + budget_s
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = GpuBench(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    say(f"[bench] device: {out.device}; peak bf16 {peak_flops(device) / 1e12:.0f} TFLOP/s")
    use_gpu = "yes" if device.type == "cuda" else "no"
    state: dict[str, Any] = {}

    def data() -> None:
        from rsray.runtime import quiet_data_context

        ensure_ray()
        quiet_data_context()
        uri = shards or synthetic_shards("bigearthnet", str(root / f"shards{sizes.samples}"),
                                         sizes.samples, seed=0)
        cfg = load_config(None, [
            f"data.uri={uri}", f"data.image_size={sizes.image_size}",
            "data.batch_size=32" if not smoke else "data.batch_size=8",
            f"model.name={sizes.trial_model}", f"scaling.use_gpu={use_gpu}",
            "scaling.cpus_per_worker=1", "train.max_epochs=1", "train.log_every_n_steps=100000",
            f"train.storage_path={root / 'runs'}", "tune.space=progressive_smoke"])
        state.update(cfg=cfg, manifest=load_shard_set(cfg.data))

    def models() -> None:
        for model, batch in sizes.models:
            out.models[model] = model_rate(state["cfg"], state["manifest"], model, batch,
                                           device, sizes.steps)
            r = out.models[model]
            say(f"[bench] {model} ({sizes.image_size} px, batch {batch}): "
                f"{r['samples_per_s']:.0f} samples/s, {r['gflops_per_sample']:.2f} GFLOP/sample "
                f"(fwd+bwd), {r['tflops']:.1f} TFLOP/s, MFU {r['mfu']:.1%}")

    def pipeline() -> None:
        out.pipeline = pipeline_rates(state["cfg"], state["manifest"], device)
        gpu = out.models.get(sizes.pipeline_model, {}).get("samples_per_s", math.nan)
        for route, r in out.pipeline.items():
            say(f"[bench] pipeline {route}: {r['samples_per_s']:.0f} samples/s into {device}, "
                f"first batch {r['first_batch_s']:.2f} s; pipeline / {sizes.pipeline_model} "
                f"training on {device} = {r['samples_per_s'] / gpu:.2f}")

    def trials() -> None:
        from rsray.bench.trials import format_tune_benchmark, run_tune_benchmark

        res = run_tune_benchmark(state["cfg"], trials=1, epochs=1, paths=sizes.trials,
                                 storage=str(root / "tune"))
        out.trials = {m: {"fixed_median_s": r.fixed_median, "wall_over_train": r.wall_over_train,
                          "trials": r.trials} for m, r in res.items()}
        say(format_tune_benchmark(res, 1))

    def pack() -> None:
        if packing is None:
            raise RuntimeError("no packing measurement given (rsray.study.packing.time_packing)")
        cfg = state["cfg"].with_overrides({"model.name": sizes.pack_model, "model.params": {}})
        out.packing = packing(cfg, root / "pack", sizes.seeds)
        p = out.packing
        base = p["separate_seeds_per_hour"]
        say(f"[bench] {sizes.seeds} seeds of {sizes.pack_model}: " + "; ".join(
            f"{mode} {p[f'{mode}_seconds']:.0f} s ({p[f'{mode}_seeds_per_hour']:.0f} seeds/h, "
            f"{p[f'{mode}_seeds_per_hour'] / base:.2f}x"
            + (f", {p.get(f'{mode}_vectorised', 0):.0f} vectorised)" if mode == "vmap" else ")")
            for mode in ("separate", "sequential", "vmap") if f"{mode}_seconds" in p))

    steps = {"data": data, "models": models, "pipeline": pipeline, "trials": trials,
             "packing": pack}
    for section in ("data", *sections):
        left = deadline - time.monotonic()
        if left < 5 or (section != "data" and "cfg" not in state):
            out.errors[section] = "skipped: no time left" if left < 5 else "skipped: no data"
            say(f"[bench] {section}: {out.errors[section]}")
            continue
        t0 = time.monotonic()
        try:
            with time_limit(min(left, sizes.budgets[section])):
                steps[section]()
        except Exception as exc:  # one section failing must not end the run
            out.errors[section] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            say(f"[bench] {section}: {out.errors[section]}")
        out.seconds[section] = time.monotonic() - t0
        say(f"[bench] {section} took {out.seconds[section]:.0f} s")
    return out
