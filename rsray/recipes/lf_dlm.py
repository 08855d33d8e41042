"""The LF-DLM recipe as the paper runs it: branches trained apart, fusion weight chosen after.

lf-dlm-flair2-late-fusion.txt trains the UNetFormer (aerial) and the U-TAE (Sentinel-2 series)
separately, each with early stopping on the validation loss (patience 15, at most 30 epochs,
AdamW 1e-4 with polynomial decay to 1e-7, CE + Dice) and keeps each one's best model; it then
"experimented with different weight combinations for the late fusion" and reports 0.7 / 0.3.
This module does exactly that with rsray's own training and evaluation:

1. train the aerial branch alone (``model.params.branch=aerial``, only the aerial modality is
   read), ``n_aerial`` times with seeds ``seed, seed + 1000, ...`` for the ensemble (the
   stride keeps the members of seed ``s`` apart from those of seed ``s + 1`` in a study);
2. train the series branch alone (``branch=series``, only the series is read);
3. load the best checkpoint of each into one fused ``branch=both`` model and score every
   fusion weight of a grid on the validation split in a single pass (each batch's branch
   probabilities are computed once, then fused once per weight; nothing is retrained);
4. save the fused model with the best weight as an ordinary rsray checkpoint, so
   ``rsray evaluate`` / ``predict`` / the study layer use it like any other, and evaluate it
   on the test splits;
5. write ``recipe.json`` (branch checkpoints, the grid, the chosen weight, test metrics) and
   ``weights.png`` (validation metric against the aerial weight, the paper's 0.7 marked).

The joint alternative (both branches trained end to end through the fused output) is the
plain ``lf_dlm`` model under ``rsray train`` / ``jobs/tune_segmentation.py``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rsray.config import Config
from rsray.data.shards import Manifest
from rsray.errors import ConfigError, RsrayError
from rsray.storage import get_fs, is_remote_url, join, to_uri
from rsray.train.run_plan import RunPlan

WEIGHT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
"""Aerial weights scored on validation (the series gets ``1 - w``); the paper's 0.7 is in it."""

PAPER_WEIGHT = 0.7
"""The aerial weight the paper reports as best."""

SEED_STRIDE = 1000
"""Seed distance between the aerial branches of one ensemble (``seed + k * SEED_STRIDE``)."""

Fit = Callable[[Config, Manifest], str]
"""Trains one branch config on a shard set and returns its best checkpoint's URI."""


@dataclass
class RecipeResult:
    """What the recipe produced (also written as ``recipe.json``)."""

    aerial_checkpoints: list[str]
    series_checkpoint: str
    metric: str
    grid: list[dict[str, float]] = field(default_factory=list)
    """One entry per aerial weight: ``{"aerial_weight", <metric>, "loss"}`` on validation."""
    best_weight: float = math.nan
    fused_checkpoint: str = ""
    test: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the recipe chose, for a study's record: the weight, its grid, the branches."""
        return {"best_weight": self.best_weight, "metric": self.metric, "grid": self.grid,
                "branches": [*self.aerial_checkpoints, self.series_checkpoint]}


def branch_config(cfg: Config, branch: str, seed_offset: int = 0) -> Config:
    """The config that trains one branch of ``cfg``'s LF-DLM model alone.

    Only the branch's modality is read; the run is named ``<train.name>-<branch>[k]``.
    """
    params = dict(cfg.model.params)
    image = params.get("image_modality", "aerial")
    series = params.get("series_modality", "s2")
    params["branch"] = branch
    if branch == "aerial":
        params["n_aerial"] = 1
        modalities = [image]
        name = f"{cfg.train.name}-aerial{seed_offset}"
    else:
        params["output_size"] = int(cfg.data.image_size)  # the label size, without the image
        modalities = [series]
        name = f"{cfg.train.name}-series"
    return cfg.with_overrides({
        "model.params": params, "data.modalities": modalities, "train.name": name,
        "train.seed": cfg.train.seed + seed_offset * SEED_STRIDE,
    })


def branch_configs(cfg: Config, n_aerial: int) -> list[Config]:
    """Every training run of the recipe: ``n_aerial`` aerial branches, then the series one."""
    return [*(branch_config(cfg, "aerial", k) for k in range(n_aerial)),
            branch_config(cfg, "series")]


def runs(cfg: Config) -> list[Config]:
    """The configs of every training run the recipe makes for ``cfg`` (its branches).

    The number of aerial branches is the model's ``n_aerial`` (registry default included:
    two for ``lf_dlm_ensemble``), read from the model built on the meta device.
    """
    import torch

    from rsray.models import create_model

    params = dict(cfg.model.params)
    params.pop("pretrained_file", None)
    if isinstance(params.get("aerial"), dict):  # no weights are read for a model on meta
        params["aerial"] = {k: v for k, v in params["aerial"].items() if k != "pretrained_file"}
    image = params.get("image_modality", "aerial")
    series = params.get("series_modality", "s2")
    with torch.device("meta"):
        model = create_model(cfg.model.name, modalities={image: 5, series: 10}, num_classes=2,
                             **params)
    return branch_configs(cfg, len(model.aerial))


def weight_split(cfg: Config) -> str:
    """The split the fusion weight is chosen on: the first of ``data.eval_splits``.

    It is the split each branch's early stopping and best checkpoint were judged on (``val``).
    """
    return cfg.data.eval_splits[0]


def check_recipe_config(cfg: Config) -> None:
    """One-line errors for configs the recipe cannot run."""
    from rsray.models import model_module

    if model_module(cfg.model.name) != "lf_dlm":
        raise ConfigError(f"model.name: the LF-DLM recipe needs an lf_dlm model "
                          f"(lf_dlm, lf_dlm_ensemble, lf_dlm_small, test_lf_dlm, ...), got "
                          f"{cfg.model.name!r}")
    if cfg.model.params.get("branch", "both") != "both":
        raise ConfigError("model.params.branch: the recipe sets it per branch; leave it unset")


def _best_checkpoint(cfg: Config, manifest: Manifest) -> str:
    """Train ``cfg`` on ``manifest``; the URI of its best checkpoint (``s3://...`` there)."""
    from rsray.train.driver import best_checkpoint, fit_run

    run = RunPlan.build(cfg, manifest)
    ckpt = best_checkpoint(fit_run(run, manifest), run, f"run {cfg.train.name}")
    return to_uri(get_fs(cfg.train.storage_path)[0], ckpt.path)


def fuse(cfg: Config, aerial: Sequence[str], series: str,
         manifest: Manifest) -> tuple[RunPlan, Any]:
    """The ``branch=both`` run of ``cfg`` and its model holding the trained branches' weights."""
    from rsray.evaluate.checkpoint import open_checkpoint

    fused_cfg = cfg.with_overrides({"model.params": {**cfg.model.params, "branch": "both",
                                                     "n_aerial": len(aerial)}})
    run = RunPlan.build(fused_cfg, manifest)
    model = run.build_model()
    for k, path in enumerate(aerial):
        branch = open_checkpoint(path, manifest).model
        model.aerial[k].load_state_dict(branch.aerial[0].state_dict())
    model.series.load_state_dict(open_checkpoint(series, manifest).model.series.state_dict())
    return run, model.eval()


def score_weights(run: RunPlan, model: Any, manifest: Manifest, split: str,
                  weights: Sequence[float]) -> list[dict[str, float]]:
    """Validation loss and metrics of every aerial weight, in one pass over ``split``."""
    from rsray.data.datasets import build_split
    from rsray.data.finalize import finalize_batch
    from rsray.train.step import model_inputs

    plan, metric = run.eval_plan, run.metric
    tasks = [run.build_task() for _ in weights]
    losses = [0.0 for _ in weights]
    n = 0
    modalities = tuple(m.name for m in plan.modalities)
    with torch.no_grad():
        for raw in build_split(manifest, split, plan).iter_torch_batches(
                batch_size=run.config.data.batch_size):
            batch = finalize_batch(raw, plan)
            target = batch["label"]
            log_pa, log_ps = model.branch_log_probs(model_inputs(batch, modalities))
            for i, w in enumerate(weights):
                fused = F.log_softmax(w * log_pa + (1.0 - w) * log_ps, dim=1)
                losses[i] += float(tasks[i].loss(fused, target)) * target.shape[0]
                tasks[i].metrics.update(fused, target)
            n += int(target.shape[0])
    if n == 0:
        raise RsrayError(f"{manifest.uri}: split {split!r} has no samples")
    rows = []
    prefix = f"{split}_"
    for w, task, loss in zip(weights, tasks, losses, strict=True):
        values = {k: float(v) for k, v in task.metrics.compute().items()}
        row = {"aerial_weight": float(w), f"{prefix}loss": loss / n}
        row.update({f"{prefix}{k}": v for k, v in values.items() if "/" not in k})
        if metric not in row:
            raise RsrayError(f"train.metric: {metric!r} is not a metric of {split!r} "
                             f"(there are {sorted(row)})")
        rows.append(row)
    return rows


def _pick(rows: list[dict[str, float]], metric: str, mode: str) -> float:
    def key(row: dict[str, float]) -> tuple[float, float]:
        v = row[metric]
        v = -math.inf if math.isnan(v) else (v if mode == "max" else -v)
        return v, -abs(row["aerial_weight"] - PAPER_WEIGHT)  # ties: nearest the paper's

    return max(rows, key=key)["aerial_weight"]


def _save_fused(model: Any, run: RunPlan, weight: float, manifest: Manifest,
                metrics: dict[str, float], directory: Path) -> str:
    from rsray.train.checkpoint import save_checkpoint

    cfg = run.config.with_overrides({"model.params": {**run.config.model.params,
                                                      "aerial_weight": weight,
                                                      "series_weight": None}})
    model.fusion_weights.copy_(torch.tensor([weight, 1.0 - weight]))
    extra = {**RunPlan.build(cfg, manifest).checkpoint_meta(), "metrics": metrics}
    save_checkpoint(directory, model=model, optimizer=None, scheduler=None, epoch=0,
                    best_metric=metrics.get(run.metric), extra=extra)
    return str(directory)


def plot_weights(rows: list[dict[str, float]], metric: str, best: float, path: Path) -> None:
    """Validation ``metric`` against the aerial weight (PNG), the chosen and the paper's marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    xs = [r["aerial_weight"] for r in rows]
    ax.plot(xs, [r[metric] for r in rows], marker="o", label=metric)
    ax.axvline(best, color="tab:green", linestyle="--", label=f"chosen {best:.1f}")
    ax.axvline(PAPER_WEIGHT, color="tab:gray", linestyle=":", label="paper 0.7")
    ax.set_xlabel("aerial weight (series = 1 - w)")
    ax.set_ylabel(metric)
    ax.set_title("LF-DLM fusion weight on validation")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_recipe(cfg: Config, *, out_dir: str | Path, weights: Sequence[float] = WEIGHT_GRID,
               test_splits: Sequence[str] = ("test",), n_aerial: int | None = None,
               fit: Fit | None = None, manifest: Manifest | None = None) -> RecipeResult:
    """Run the whole recipe (module docstring); returns and writes what it produced.

    Args:
        cfg: an ``lf_dlm*`` config (data, optimiser, epochs are used for both branches).
        out_dir: folder (local or ``s3://``) for ``recipe.json``, ``weights.png`` and the
            fused checkpoint.
        weights: aerial weights to score on validation (each in [0, 1]).
        test_splits: splits the fused model is evaluated on (those the shard set has).
        n_aerial: aerial branches (default the model's ``n_aerial``: 2 for the ensemble).
        fit: trains one branch and returns its best checkpoint (default: a ``TorchTrainer``
            run of its own, ``rsray train``'s route; a study passes its trial's route).
        manifest: the shard set, already read and verified (default: read ``cfg.data``'s).
    """
    from rsray.data.datasets import load_shard_set
    from rsray.data.plan import default_splits
    from rsray.evaluate import evaluate_checkpoint
    from rsray.evaluate.evaluate import json_safe

    check_recipe_config(cfg)
    bad = [w for w in weights if not 0.0 <= float(w) <= 1.0]
    if not weights or bad:
        raise ConfigError(f"--weights: aerial weights must be in [0, 1], got {list(weights)}")
    if manifest is None:  # read and verified once
        manifest = load_shard_set(cfg.data, tuple(dict.fromkeys(
            [*default_splits(cfg.data), *test_splits])))
    fit = fit or _best_checkpoint
    if manifest.task != "segmentation":
        raise RsrayError(f"{manifest.uri}: the LF-DLM recipe needs a segmentation shard set, "
                         f"this one is {manifest.task!r}")
    run = RunPlan.build(cfg, manifest)
    cfg = run.config
    if n_aerial is None:  # the variant's own number of aerial branches
        n_aerial = len(run.build_model().aerial)
    remote = is_remote_url(str(out_dir))
    out = Path(tempfile.mkdtemp(prefix="rsray-lfdlm-")) if remote else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[rsray] LF-DLM recipe: {n_aerial} aerial branch(es) + the series branch, trained "
          f"separately; then {len(weights)} fusion weights scored on validation", flush=True)
    aerial = []
    *aerial_cfgs, series_cfg = branch_configs(cfg, n_aerial)
    for k, branch in enumerate(aerial_cfgs):
        print(f"[rsray] LF-DLM recipe: training aerial branch {k + 1}/{n_aerial}", flush=True)
        aerial.append(fit(branch, manifest))
    print("[rsray] LF-DLM recipe: training the series branch", flush=True)
    series = fit(series_cfg, manifest)
    result = RecipeResult(aerial_checkpoints=aerial, series_checkpoint=series,
                          metric=cfg.train.metric)
    fused, model = fuse(cfg, aerial, series, manifest)
    split = weight_split(cfg)
    result.grid = score_weights(fused, model, manifest, split, weights)
    result.best_weight = _pick(result.grid, run.metric, run.mode)
    chosen = next(r for r in result.grid if r["aerial_weight"] == result.best_weight)
    for row in result.grid:
        print(f"[rsray]   aerial weight {row['aerial_weight']:.1f}: "
              f"{cfg.train.metric} {row[cfg.train.metric]:.4f}", flush=True)
    print(f"[rsray] LF-DLM recipe: chosen aerial weight {result.best_weight:.1f} "
          f"({cfg.train.metric} {chosen[cfg.train.metric]:.4f}; paper: 0.7)", flush=True)
    result.fused_checkpoint = _save_fused(model, fused, result.best_weight, manifest, chosen,
                                          out / "fused_checkpoint")
    splits = [s for s in test_splits if s in manifest.splits]
    if splits:
        result.test = evaluate_checkpoint(result.fused_checkpoint, cfg.data.uri, splits,
                                          manifest=manifest)
    plot_weights(result.grid, cfg.train.metric, result.best_weight, out / "weights.png")
    doc = {**asdict(result), "synthetic": manifest.synthetic, "data": manifest.uri,
           "model": cfg.model.name}
    if remote:  # everything goes up at once; the fused checkpoint is then named remotely
        doc["fused_checkpoint"] = result.fused_checkpoint = join(str(out_dir),
                                                                 "fused_checkpoint")
    (out / "recipe.json").write_text(json.dumps(json_safe(doc), indent=2) + "\n")
    if remote:
        fs, path = get_fs(str(out_dir))
        fs.put(str(out) + "/", path, recursive=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"[rsray] LF-DLM recipe: wrote recipe.json and weights.png to {out_dir}", flush=True)
    return result


__all__ = ["PAPER_WEIGHT", "SEED_STRIDE", "WEIGHT_GRID", "Fit", "RecipeResult",
           "branch_config", "branch_configs", "check_recipe_config", "fuse", "run_recipe",
           "runs", "score_weights", "weight_split"]
