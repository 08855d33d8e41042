"""Training benchmark: the model's own ceiling, rsray's training rate, and Tune's overhead.

Three measurements on one shard set, in one run:

1. **ceiling**: forward + backward + optimiser step on batches already in memory (decoded,
   augmented and finalised once, then reused), with as many torch threads as a training worker
   gets (``scaling.cpus_per_worker``, rounded down, at least 1). What the model can do with
   no input pipeline at all.
2. **rsray**: ``rsray train`` (:func:`rsray.train.driver.fit`) for ``epochs`` epochs with its
   real loader; the steady-state rate is the last epoch's ``train_samples_per_second``. Its
   ratio to the ceiling is the pipeline tax (1.0 = none). Also reported: the last epoch's time
   to its first batch, its data-wait share, and the run's start-up costs.
3. **variants** (``--compare``): the same ``rsray train`` run once per set of overrides (sync
   vs async checkpoint upload, host vs device augmentation, ``data.cache=device``), side by
   side in one run, and :func:`time_augment`: augmentation + :func:`finalize_batch` of one
   training batch on the host (NumPy) against on the device (torch), per device present.
4. **tune**: ``trials`` trials of ``epochs`` epochs each (ASHA's grace period = ``epochs``, so
   none is stopped early) one at a time; the experiment's wall time against the sum of the
   trials' training time (the epochs' training loops) and against the model compute that
   ceiling implies for the samples trained.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rsray.config import Config
from rsray.data.augment import augment_device, augment_kwargs, augment_raw
from rsray.data.datasets import build_split
from rsray.data.finalize import finalize_batch
from rsray.data.shards import Manifest
from rsray.train.run_plan import RunPlan

COMPARE_VARIANTS: dict[str, dict[str, object]] = {
    # every epoch checkpointed, so the upload mode shows in the report time and epoch wall
    "upload sync, ckpt every epoch": {"train.checkpoint_upload": "sync",
                                      "train.checkpoint_every": 1},
    "upload async, ckpt every epoch": {"train.checkpoint_upload": "async",
                                       "train.checkpoint_every": 1},
    "augment_on=host (cached)": {"data.cache": "memory", "data.augment_on": "host"},
    "augment_on=device (cached)": {"data.cache": "memory", "data.augment_on": "device"},
    "cache=device": {"data.cache": "device"},
    "streamed (data.cache=off)": {"data.cache": "off"},
}
"""What ``jobs/bench_train.py --compare`` trains, each beside the others on the same shards."""


@dataclass
class TrainBench:
    """What :func:`run_train_benchmark` measured (samples/s and seconds)."""

    model: str
    batch_size: int
    threads: int
    ceiling: float
    rsray: float = math.nan
    fit: dict[str, float] = field(default_factory=dict)
    tune: dict[str, float] = field(default_factory=dict)
    variants: dict[str, dict[str, float]] = field(default_factory=dict)
    augment: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per device: samples/s of augment + finalize on the ``host`` and on the ``device``."""

    @property
    def tax(self) -> float:
        """The training rate of rsray over the model's ceiling (1.0: the pipeline costs nothing)."""
        return self.rsray / self.ceiling


def _train_batch(run: RunPlan, manifest: Manifest) -> dict[str, np.ndarray]:
    """One decoded, un-augmented training batch (native dtypes), in memory."""
    raw = build_split(manifest, "train", run.train_plan).take_batch(
        run.config.data.batch_size, batch_format="numpy")
    return {k: np.array(v) for k, v in raw.items()}


def compute_ceiling(run: RunPlan, manifest: Manifest, *, steps: int = 8,
                    threads: int = 1) -> float:
    """Samples/s of forward + backward + step on in-memory batches (the model's own ceiling)."""
    from rsray.train.optim import build_optimizer
    from rsray.train.step import model_inputs

    plan = run.train_plan
    raw = _train_batch(run, manifest)
    if run.data.augment is not None:
        raw = augment_raw(raw, plan, rng=np.random.default_rng(0), **run.data.augment)
    batch = finalize_batch(raw, plan)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = run.build_model()
        modalities = tuple(getattr(model, "modalities", tuple(run.channels)))
        optimizer = build_optimizer(model, run.config.optim)
        task = run.build_task()
        model.train()
        inputs, target = model_inputs(batch, modalities), task.target(batch)

        def step() -> None:
            loss = task.loss(model(inputs).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up (allocations, first-call paths)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * target.shape[0] / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)


def time_augment(run: RunPlan, manifest: Manifest, device: torch.device, *,
                 repeats: int = 5, threads: int = 1) -> dict[str, float]:
    """Samples/s of augmentation + :func:`finalize_batch` of one training batch, two ways.

    ``host``: :func:`augment_raw` in NumPy, copy to ``device``, finalize there (what a CPU
    worker does on a cached split). ``device``: copy the native batch to ``device``, then
    :func:`augment_device` and finalize there (``data.augment_on=device``). Both include the
    copy, so on a GPU the figure is the whole host-to-model-input path. The augmentation is the
    run's (its ``data.*`` settings even when ``data.augment`` is off).
    """
    from rsray.train.batches import device_generator, to_device

    plan = run.train_plan
    raw = _train_batch(run, manifest)
    kwargs = run.data.augment or augment_kwargs(run.config.data)
    rng, gen = np.random.default_rng(0), device_generator(device, 0)
    n = len(raw["label"])

    def host() -> None:
        finalize_batch(to_device(augment_raw(dict(raw), plan, rng=rng, **kwargs), device), plan)

    def on_device() -> None:
        finalize_batch(augment_device(to_device(raw, device), plan, generator=gen, **kwargs),
                       plan)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {}
    try:
        for name, fn in (("host", host), ("device", on_device)):
            fn()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out[name] = repeats * n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return out


def _fit(cfg: Config, manifest: Manifest) -> dict[str, float]:
    from rsray.train.driver import fit_run

    t0 = time.perf_counter()
    result = fit_run(RunPlan.build(cfg, manifest), manifest)
    if result.error is not None:
        raise RuntimeError(f"bench fit failed: {result.error}")
    m = result.metrics
    keys = ("train_samples_per_second", "train_first_batch_seconds", "data_wait_share",
            "epoch_seconds", "train_seconds", "eval_seconds", "startup_seconds",
            "setup_seconds", "report_seconds")
    out = {k: float(m[k]) for k in keys if k in m}
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def _tune(cfg: Config, ceiling: float) -> dict[str, float]:
    from rsray.tune.run import tune_fusion

    outcome = tune_fusion(cfg)
    timing = outcome.trial_timing
    train = sum(t.get("train_seconds", 0.0) for t in timing)
    samples = sum(t.get("samples", 0.0) for t in timing)
    compute = samples / ceiling if ceiling > 0 else math.nan
    return {"trials": float(len(timing)), "wall_seconds": outcome.seconds,
            "train_seconds": train, "compute_seconds": compute,
            "wall_over_train": outcome.seconds / train if train else math.nan,
            "wall_over_compute": outcome.seconds / compute if compute else math.nan,
            "startup_seconds": float(np.mean([t.get("startup_seconds", math.nan)
                                              for t in timing])),
            "first_batch_later_epochs": float(np.mean(
                [t.get("later_first_batch_seconds", math.nan) for t in timing])),
            **wall_split(timing, outcome.seconds)}


WALL_PARTS = ("startup_seconds", "setup_seconds", "train_seconds", "eval_seconds",
              "report_seconds")
"""Where a trial's time goes, from its reports (``rsray.tune.run.trial_timing``)."""


def wall_split(timing: list[dict[str, float]], wall: float) -> dict[str, float]:
    """The experiment's wall time split into the trials' summed parts and the rest.

    ``split_<part>`` is the sum over trials of that part; ``split_rest`` what no trial reports:
    Tune's trial actors and scheduling, the driver's dataset decode, Tune's own bookkeeping
    and the time between one trial's end and the next trial's trainer being built.
    """
    parts = {f"split_{k}": float(sum(t.get(k, 0.0) for t in timing)) for k in WALL_PARTS}
    parts["split_rest"] = wall - sum(parts.values())
    return parts


def run_train_benchmark(cfg: Config, manifest: Manifest, *, epochs: int = 2, trials: int = 8,
                        steps: int = 8, storage: str = "rsray_results/bench",
                        skip_tune: bool = False,
                        variants: dict[str, dict[str, object]] | None = None) -> TrainBench:
    """Ceiling, rsray training rate and (unless ``skip_tune``) Tune overhead for ``cfg``.

    ``variants``: name -> overrides; each is trained like the main run, and the host vs device
    augmentation timing (:func:`time_augment`) is added, on the CPU and on a GPU if present.
    """
    from rsray.runtime import ensure_ray

    run = RunPlan.build(cfg, manifest)
    ensure_ray()
    threads = max(1, int(cfg.scaling.cpus_per_worker))
    ceiling = compute_ceiling(run, manifest, steps=steps, threads=threads)
    out = TrainBench(cfg.model.name, cfg.data.batch_size, threads, ceiling)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fit_cfg = cfg.with_overrides({"train.max_epochs": epochs, "train.storage_path": storage,
                                  "train.name": f"bench-fit-{stamp}"})
    out.fit = _fit(fit_cfg, manifest)
    out.rsray = out.fit.get("train_samples_per_second", math.nan)
    if variants:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                           else [])
        out.augment = {str(d): time_augment(run, manifest, d, threads=threads)
                       for d in devices}
        for i, (name, overrides) in enumerate(variants.items()):
            out.variants[name] = _fit(fit_cfg.with_overrides(
                {**overrides, "train.name": f"bench-fit-{stamp}-v{i}"}), manifest)
    if not skip_tune:
        tune_cfg = cfg.with_overrides({
            "train.max_epochs": epochs, "train.storage_path": storage,
            "tune.name": f"bench-tune-{stamp}", "tune.num_samples": trials,
            "tune.grace_period": epochs, "tune.max_concurrent_trials": 1})
        out.tune = _tune(tune_cfg, ceiling)
    return out


def format_train_benchmark(r: TrainBench, epochs: int) -> str:
    """The single-run part of ``jobs/bench_train.py``'s report, with its two targets."""
    f = r.fit
    first = f.get("train_first_batch_seconds", math.nan)
    lines = [
        f"training benchmark: {r.model}, batch {r.batch_size}, {r.threads} torch thread(s)",
        f"  model ceiling (in-memory batches)  {r.ceiling:8.1f} samples/s",
        f"  rsray training (last epoch)        {r.rsray:8.1f} samples/s  "
        f"data wait {f.get('data_wait_share', math.nan):.0%}",
        f"  pipeline tax = {r.tax:.2f}   (target >= 0.9: {'met' if r.tax >= 0.9 else 'NOT met'})",
        f"  first batch of epoch {epochs}: {first:.2f} s   (target <= 0.5: "
        f"{'met' if first <= 0.5 else 'NOT met'})",
        f"  run start-up {f.get('startup_seconds', 0):.1f} s, worker set-up "
        f"{f.get('setup_seconds', 0):.1f} s, eval {f.get('eval_seconds', 0):.1f} s/epoch",
    ]
    if r.variants:
        lines += _format_compare(r)
    return "\n".join(lines)


def _format_compare(r: TrainBench) -> list[str]:
    """The ``--compare`` variants side by side, with the ratios the docs quote."""
    lines = [f"  augment + finalize_batch on {dev}: host {a['host']:.0f} samples/s, device "
             f"{a['device']:.0f} samples/s, device/host = {a['device'] / a['host']:.2f}"
             for dev, a in r.augment.items()]
    lines.append(f"  {'variant':32s} {'samples/s':>9s} {'wait':>5s} {'epoch s':>8s} "
                 f"{'report s':>8s} {'1st batch s':>11s}")
    for name, f in r.variants.items():
        lines.append(f"  {name:32s} {f.get('train_samples_per_second', math.nan):9.1f} "
                     f"{f.get('data_wait_share', math.nan):5.0%} "
                     f"{f.get('epoch_seconds', math.nan):8.1f} "
                     f"{f.get('report_seconds', math.nan):8.2f} "
                     f"{f.get('train_first_batch_seconds', math.nan):11.2f}")
    v = r.variants

    def ratio(a: str, b: str, key: str) -> float:
        return v.get(a, {}).get(key, math.nan) / max(v.get(b, {}).get(key, math.nan), 1e-9)

    sync, asyn = "upload sync, ckpt every epoch", "upload async, ckpt every epoch"
    host, dev = "augment_on=host (cached)", "augment_on=device (cached)"
    rate = "train_samples_per_second"
    lines.append(f"  async/sync: report {ratio(asyn, sync, 'report_seconds'):.2f}, samples/s "
                 f"{ratio(asyn, sync, rate):.2f}, epoch {ratio(asyn, sync, 'epoch_seconds'):.2f}")
    lines.append(f"  device/host augmentation: samples/s {ratio(dev, host, rate):.2f}; "
                 f"cache=device/host: {ratio('cache=device', host, rate):.2f}")
    return lines
