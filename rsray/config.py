"""One typed, validated configuration tree for rsray.

The tree has six sections (``data``, ``model``, ``optim``, ``train``, ``scaling``, ``tune``).
Each field carries its documentation as a string literal right below it, as litgpt does.
A config is built from defaults, then a YAML file, then ``section.field=value`` overrides::

    cfg = load_config("configs/bigearthnet_progressive.yaml", ["optim.lr=3e-4"])

Any bad value raises :class:`~rsray.errors.ConfigError` naming the field and what is allowed.
"""

from __future__ import annotations

import contextlib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from rsray.errors import ConfigError


def _choice(section: str, name: str, value: Any, allowed: typing.Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(
            f"{section}.{name}: {value!r} is not allowed; choose one of "
            + ", ".join(repr(a) for a in allowed)
        )


def check_choice(section: str, name: str, value: Any, allowed: typing.Iterable[Any]) -> None:
    """Raise a one-line :class:`ConfigError` naming ``section.name`` unless ``value`` is allowed.

    The layers above the config check the names their registries hold (``model.name``,
    ``tune.space``) with it, so every such error reads the same.
    """
    _choice(section, name, value, allowed)


AUGMENT_OPS = ("hflip", "rot90", "crop")
"""Augmentation operations a modality can get (``data.augment_ops``); all by default."""


def _range(
    section: str,
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    bad = False
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ConfigError(f"{section}.{name}: {value!r} is outside the allowed range "
                          f"{left}{lo_s}, {hi_s}{right}")


@dataclass
class DataConfig:
    """Where the shards are and how they are streamed into training."""

    uri: str = "rsray_data/shards"
    """Shard set written by ``rsray prepare``: a local folder or ``s3://bucket/prefix``."""
    modalities: list[str] = field(default_factory=list)
    """Modalities fed to the model, by name (BigEarthNet-MM: ``s2``, ``s1``; FLAIR-2:
    ``aerial``, ``s2``); empty = every modality of the shard set."""
    batch_size: int = 32
    """Batch size per training worker."""
    image_size: int = 120
    """Side in pixels every raster band is resampled to (20/60 m S2 bands are upsampled)."""
    resample: Literal["bilinear", "nearest"] = "bilinear"
    """Interpolation used to bring coarse bands to ``image_size``."""
    augment: bool = True
    """Random flips, 90-degree rotations (and crops, see ``crop_scale``) on the training split."""
    desync_augment: bool = False
    """Draw flips/rotations/crops independently per modality (the thesis' desynchronised
    flipping and cropping); otherwise the modalities of a sample share one transform."""
    crop_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Random crop-and-resize: the crop's side as a fraction of the image side, drawn from
    ``[lo, hi]``; ``[1.0, 1.0]`` turns cropping off."""
    augment_ops: dict[str, list[str]] = field(default_factory=dict)
    """Per modality, the augmentations it gets (``hflip``, ``rot90``, ``crop``); a modality not
    named gets all (GLOBE horizon photos: ``{north: [hflip, crop], ...}``, no quarter turns)."""
    bands: dict[str, list[str]] = field(default_factory=dict)
    """Per modality, a band subset in this order (``{s2: [B04, B03, B02]}`` = RGB only); a
    modality not named uses all its bands."""
    modality_dropout: float = 0.0
    """Probability of zeroing one randomly chosen modality of a training sample."""
    shuffle_buffer: int = 256
    """Local shuffle buffer (rows) in each worker; 0 turns shuffling off."""
    verify_checksums: bool = True
    """Check every shard against the sha256 in the manifest before streaming it."""
    include_60m: bool = False
    """Feed the 60 m S2 bands (B01, B09) too, when the shards carry them."""
    eval_splits: list[str] = field(default_factory=lambda: ["val"])
    """Splits evaluated after every epoch; metrics are prefixed with the split name
    (``val_ap_macro``, ``ood_ap_macro`` for a ``--holdout`` split)."""
    train_fraction: float = 1.0
    """Train on a seeded, nested subset of the training split (0.1 = 10 %); data-efficiency
    studies. Evaluation splits are never subsampled."""
    fraction_seed: int = 0
    """Seed of the training subset (same seed: the 10 % subset lies inside the 25 % one)."""
    series_len: int = 0
    """Dates per time series after padding/truncation; 0 uses the shard set's maximum."""
    check_finite: bool = False
    """Debug switch: scan every element of every float modality for NaN/inf in each batch.
    Off, a batch gets one sum per float modality (integer bands are never scanned): ``rsray
    prepare`` already rejected non-finite values when it wrote the shards."""
    cache: Literal["auto", "memory", "device", "off"] = "auto"
    """Keep decoded splits in Ray's object store for the whole run (every epoch, and every
    trial of a tune experiment, reads them from memory): ``auto`` when all of them fit in
    ``cache_fraction`` of the object store, ``memory`` always, ``off`` streams every pass;
    ``device``: as ``memory``, and each worker also holds its share of the training split as
    tensors on its device (GPU memory; CPU memory on CPU workers), so an epoch is a permutation,
    slicing and on-device augmentation (an error when the share does not fit)."""
    augment_on: Literal["auto", "host", "device"] = "auto"
    """Where training augmentation runs: ``host`` NumPy (in Ray Data tasks for a streamed split,
    in the worker's batch thread for a cached one), ``device`` torch on the worker's device
    after the (pinned, non-blocking) copy; ``auto``: ``device`` on a CUDA worker and with
    ``cache=device``, else ``host`` (NumPy measured faster on a CPU worker)."""
    cache_fraction: float = 0.3
    """Share of the cluster's object-store memory that ``cache=auto`` may fill."""

    def validate(self) -> None:
        """Check values and ranges."""
        _range("data", "batch_size", self.batch_size, 1)
        _range("data", "image_size", self.image_size, 8)
        _choice("data", "resample", self.resample, ["bilinear", "nearest"])
        _range("data", "modality_dropout", self.modality_dropout, 0.0, 1.0, hi_open=True)
        _range("data", "shuffle_buffer", self.shuffle_buffer, 0)
        _range("data", "train_fraction", self.train_fraction, 0.0, 1.0, lo_open=True)
        _range("data", "series_len", self.series_len, 0)
        _choice("data", "cache", self.cache, ["auto", "memory", "device", "off"])
        _choice("data", "augment_on", self.augment_on, ["auto", "host", "device"])
        if self.cache == "device" and self.augment_on == "host":
            raise ConfigError("data.augment_on=host: a device-resident split (data.cache="
                              "device) is augmented on the device; use auto or device")
        _range("data", "cache_fraction", self.cache_fraction, 0.0, 1.0)
        if not self.eval_splits:
            raise ConfigError("data.eval_splits: at least one split to evaluate is needed")
        if "train" in self.eval_splits:
            raise ConfigError("data.eval_splits: evaluate on held-out splits, not 'train'")
        if len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"data.crop_scale: {self.crop_scale} must be [lo, hi] with "
                              "0 < lo <= hi <= 1")
        for name, ops in self.augment_ops.items():
            if not isinstance(ops, list) or not set(ops) <= set(AUGMENT_OPS):
                raise ConfigError(f"data.augment_ops.{name}: {ops!r} must be a list drawn from "
                                  + ", ".join(AUGMENT_OPS))
        for name, bands in self.bands.items():
            if not isinstance(bands, list) or not bands or len(set(bands)) != len(bands):
                raise ConfigError(f"data.bands.{name}: {bands!r} must be a non-empty list of "
                                  "distinct band names")
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"data.modalities: {self.modalities} names a modality twice")


@dataclass
class ModelConfig:
    """Which registered model to build and its hyper-parameters."""

    name: str = "progressive_fusion_small"
    """Registered model name (``rsray models`` lists them)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the model constructor (depth, width, reduction, dropout, ...)."""

    def validate(self) -> None:
        """Nothing to check here: the model registry checks ``name`` when the run is resolved.

        (:meth:`rsray.train.run_plan.RunPlan.build`, before Ray starts; the config sits below
        the models and does not import them.)
        """


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["adam", "adamw", "rmsprop"] = "adamw"
    """Optimiser."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 1e-4
    """L2 penalty (decoupled for AdamW)."""
    metadata_weight_decay: float | None = None
    """L2 penalty of the layers that process the metadata vector (modules named ``meta`` /
    ``meta_*``: embedding MLPs, metadata branches, FiLM projections); ``None`` uses
    ``weight_decay``. The GLOBE study's "L2 regularizer ... applied to metadata". Like
    ``weight_decay`` it is torch's coefficient: Keras' ``l2(c)`` equals ``2 * c`` here."""
    scheduler: Literal["none", "cosine", "step", "cyclic", "poly"] = "cosine"
    """Schedule: cosine annealing over all epochs, step decay, a triangular cyclic LR, or
    polynomial decay from ``lr`` to ``poly_end_lr`` at the last epoch (LF-DLM)."""
    step_size: int = 5
    """Epochs between decays (``step``) or half-cycle length in epochs (``cyclic``)."""
    gamma: float = 0.1
    """Decay factor of the ``step`` schedule."""
    cyclic_min_ratio: float = 0.1
    """Lowest LR of the ``cyclic`` schedule as a fraction of ``lr``."""
    cycle_length: int = 0
    """Epochs per full cycle (low → high → low) of ``cyclic``; 0 = ``2 * step_size``. The
    GLOBE study's LR "oscillated every 5 epochs": 5."""
    poly_power: float = 1.0
    """Power of the ``poly`` schedule (1: linear; LF-DLM gives none, Keras' default is 1)."""
    poly_end_lr: float = 1e-7
    """LR the ``poly`` schedule reaches at the last epoch (LF-DLM: 1e-7)."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value; 0 disables clipping."""

    def validate(self) -> None:
        """Check values and ranges."""
        _choice("optim", "name", self.name, ["adam", "adamw", "rmsprop"])
        _choice("optim", "scheduler", self.scheduler, ["none", "cosine", "step", "cyclic", "poly"])
        _range("optim", "poly_power", self.poly_power, 0.0, lo_open=True)
        _range("optim", "poly_end_lr", self.poly_end_lr, 0.0)
        if self.scheduler == "poly" and self.poly_end_lr > self.lr:
            raise ConfigError(f"optim.poly_end_lr: {self.poly_end_lr} is above optim.lr "
                              f"{self.lr}; the poly schedule decays")
        _range("optim", "lr", self.lr, 0.0, 10.0, lo_open=True)
        _range("optim", "weight_decay", self.weight_decay, 0.0)
        if self.metadata_weight_decay is not None:
            _range("optim", "metadata_weight_decay", self.metadata_weight_decay, 0.0)
        _range("optim", "cycle_length", self.cycle_length, 0)
        if self.cycle_length == 1:
            raise ConfigError("optim.cycle_length: 1 epoch cannot rise and fall; use >= 2 "
                              "(or 0 for 2 * step_size)")
        _range("optim", "step_size", self.step_size, 1)
        _range("optim", "gamma", self.gamma, 0.0, 1.0, lo_open=True)
        _range("optim", "cyclic_min_ratio", self.cyclic_min_ratio, 0.0, 1.0, lo_open=True)
        _range("optim", "grad_clip", self.grad_clip, 0.0)


@dataclass
class TrainConfig:
    """Training loop, loss, checkpointing and where results are stored."""

    max_epochs: int = 10
    """Number of epochs (a Tune scheduler may stop a trial earlier)."""
    loss: Literal["auto", "bce", "combined", "ce", "ce_dice", "mse", "mae"] = "auto"
    """``auto``: the task's default (``bce`` multi-label/binary, ``ce`` single-label,
    ``ce_dice`` segmentation, ``mse`` regression); ``bce``: BCE with logits; ``combined``:
    alpha*weighted BCE(beta) + (1-alpha)*Dice; ``ce``: cross-entropy; ``ce_dice``: alpha*CE +
    (1-alpha)*Dice; ``mse`` / ``mae``: squared / absolute error on standardised targets."""
    loss_alpha: float = 0.5
    """Weight of the BCE (``combined``) or cross-entropy (``ce_dice``) term."""
    loss_beta: float = 0.5
    """Weight of positives in the weighted BCE of the combined loss."""
    metric: str = "auto"
    """Validation metric that drives early stopping, checkpoint ranking and tuning; ``auto``
    is the task's headline metric (``val_ap_macro`` multi-label, ``val_oa`` single-label,
    ``val_auc_mean`` binary heads, ``val_miou`` segmentation, ``val_r2_mean`` regression)."""
    mode: Literal["auto", "max", "min"] = "auto"
    """Whether ``metric`` is better higher or lower; ``auto``: ``min`` for losses and errors
    (RMSE, MAE), else ``max`` (see :func:`rsray.train.tasks.metric_mode`)."""
    early_stopping_patience: int = 0
    """Stop after this many epochs without improvement of ``early_stopping_metric``; 0
    disables."""
    early_stopping_metric: str = ""
    """What early stopping watches; empty: ``metric``. A different one (e.g. ``val_loss``,
    minimised, as LF-DLM stops on the validation loss while keeping its best model by mIoU)
    leaves checkpoint ranking and tuning on ``metric``."""
    amp: Literal["auto", "bf16", "off"] = "auto"
    """bf16 autocast: ``auto`` uses it on GPUs that support it, never on CPU."""
    seed: int = 0
    """Seed for model initialisation and augmentation."""
    storage_path: str = "rsray_results"
    """Where runs and checkpoints go: a local folder or ``s3://bucket/prefix``."""
    name: str = "rsray-train"
    """Run name. Re-running with the same name resumes from the last checkpoint."""
    max_failures: int = 0
    """Worker-group restarts Ray Train attempts after a failure (-1: unlimited)."""
    num_to_keep: int = 2
    """Checkpoints kept per run (the best by ``metric`` and the latest)."""
    log_every_n_steps: int = 50
    """Print a progress line every this many training steps (rank 0)."""
    resource_wait_s: float = 600.0
    """Longest wait, in seconds, for the CPUs/GPUs a run (or a trial) needs to be free before
    it fails with a message naming what it waited for; 0 waits forever."""
    checkpoint_every: int = 0
    """Checkpoint every this many epochs, besides the epochs that improve ``metric`` and the
    last one (or an early stop); 0: only those. Every epoch still reports its metrics (what
    ASHA needs); a resume starts after the newest checkpoint."""
    checkpoint_upload: Literal["async", "sync"] = "async"
    """``async``: the checkpoint directory is written on the training thread and copied to
    ``storage_path`` by Ray Train's upload thread (``CheckpointUploadMode.ASYNC``) while the
    next epoch trains; ``sync``: the report waits for the copy."""

    def validate(self) -> None:
        """Check values and ranges."""
        _range("train", "max_epochs", self.max_epochs, 1)
        _choice("train", "loss", self.loss, ["auto", "bce", "combined", "ce", "ce_dice", "mse",
                                             "mae"])
        _range("train", "loss_alpha", self.loss_alpha, 0.0, 1.0)
        _range("train", "loss_beta", self.loss_beta, 0.0, 1.0)
        _choice("train", "mode", self.mode, ["auto", "max", "min"])
        _choice("train", "amp", self.amp, ["auto", "bf16", "off"])
        _range("train", "early_stopping_patience", self.early_stopping_patience, 0)
        _range("train", "max_failures", self.max_failures, -1)
        _range("train", "num_to_keep", self.num_to_keep, 1)
        _range("train", "log_every_n_steps", self.log_every_n_steps, 1)
        _range("train", "resource_wait_s", self.resource_wait_s, 0.0)
        _range("train", "checkpoint_every", self.checkpoint_every, 0)
        _choice("train", "checkpoint_upload", self.checkpoint_upload, ["async", "sync"])
        if not self.name or "/" in self.name:
            raise ConfigError(f"train.name: {self.name!r} must be a non-empty name without '/'")


@dataclass
class ScalingConfig:
    """How many Ray Train workers and what each gets."""

    num_workers: int = 1
    """Training workers (one per GPU on a GPU cluster)."""
    use_gpu: Literal["auto", "yes", "no"] = "auto"
    """``auto``: one GPU per worker when the cluster has GPUs when the run starts, else CPU.
    On an autoscaling cluster whose GPU nodes are not up yet, ``auto`` means CPU: say ``yes``
    there, so the trials ask for GPUs and the autoscaler adds GPU nodes."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker; fractional values leave CPUs for Ray Data on small nodes."""
    trial_mode: Literal["auto", "local", "trainer"] = "auto"
    """How a Tune trial (``rsray tune``, a study's runs) trains: ``local`` runs the training
    function in the trial's own process (Ray Train V2 local mode: no controller actor, no
    worker group; the trial reserves the worker's CPUs/GPU, Tune retries it after a failure);
    ``trainer`` starts a full ``TorchTrainer`` per trial; ``auto``: ``local`` when
    ``num_workers`` is 1. ``rsray train`` always uses the ``TorchTrainer``."""

    def validate(self) -> None:
        """Check values and ranges."""
        _range("scaling", "num_workers", self.num_workers, 1)
        _choice("scaling", "use_gpu", self.use_gpu, ["auto", "yes", "no"])
        _choice("scaling", "trial_mode", self.trial_mode, ["auto", "local", "trainer"])
        if self.trial_mode == "local" and self.num_workers != 1:
            raise ConfigError(f"scaling.trial_mode: 'local' runs one worker, but "
                              f"scaling.num_workers is {self.num_workers}; use 'trainer' "
                              "or 'auto'")
        _range("scaling", "cpus_per_worker", self.cpus_per_worker, 0.0, lo_open=True)


@dataclass
class TuneConfig:
    """Ray Tune search: Optuna TPE proposals, ASHA early termination."""

    space: str = "progressive"
    """Search space name from :mod:`rsray.tune.spaces`."""
    num_samples: int = 8
    """Number of trials."""
    max_concurrent_trials: int = 0
    """Trials running at once; 0 picks what the cluster's resources allow."""
    grace_period: int = 1
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: int = 2
    """ASHA halving rate."""
    name: str = "tune-progressive"
    """Experiment name under ``train.storage_path``; the same name resumes."""
    seed: int = 0
    """Seed of the Optuna sampler."""
    families: list[str] = field(default_factory=list)
    """``tune.space=conditional``: the ``model.name`` choices (``model`` or ``model:space``);
    each family's own parameters are searched only when it is drawn
    (:mod:`rsray.tune.conditional`)."""

    def validate(self) -> None:
        """Check values and ranges."""
        # ``space`` names a search space of rsray.tune.spaces: the tuner checks it before Ray
        # starts (rsray.tune.spaces.check_space); the config does not import the layers above
        if self.space == "conditional" and not self.families:
            raise ConfigError("tune.families: tune.space=conditional needs the model families "
                              "to search, e.g. tune.families=[vit_early_fusion_small,"
                              "middle_fusion_resnet18]")
        _range("tune", "num_samples", self.num_samples, 1)
        _range("tune", "max_concurrent_trials", self.max_concurrent_trials, 0)
        _range("tune", "grace_period", self.grace_period, 1)
        _range("tune", "reduction_factor", self.reduction_factor, 2)
        if not self.name or "/" in self.name:
            raise ConfigError(f"tune.name: {self.name!r} must be a non-empty name without '/'")


@dataclass
class TrackingConfig:
    """Experiment tracking of tune runs through Ray's logger callbacks (one run per trial)."""

    mlflow: bool = False
    """Log every trial to MLflow (``pip install rsray[mlflow]``): run name = trial name,
    config = parameters, every epoch's metrics."""
    mlflow_tracking_uri: str = ""
    """MLflow tracking URI: a server (``http://host:5000``), a database (``sqlite:///x.db``),
    or a local folder (its ``mlflow.db`` SQLite store). Empty (the default): the SQLite store
    ``mlflow.db`` in ``train.storage_path`` when that is local, else in ``rsray_results``
    (``mlflow ui --backend-store-uri sqlite:///rsray_results/mlflow.db`` shows it). MLflow 3.13
    and later refuse folder ("file") stores, so folders are never passed to it as such."""
    mlflow_experiment: str = ""
    """MLflow experiment name; empty = ``tune.name``."""
    tensorboard: bool = False
    """Write TensorBoard event files into each trial's folder (``tensorboard --logdir``)."""

    def validate(self) -> None:
        """Check values."""
        if not isinstance(self.mlflow_tracking_uri, str):
            raise ConfigError(f"tracking.mlflow_tracking_uri: {self.mlflow_tracking_uri!r} "
                              "is not a URI or a folder")


@dataclass
class Config:
    """The whole configuration tree."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self) -> Config:
        """Validate every section and the cross-field rules; return self."""
        for f in fields(self):
            getattr(self, f.name).validate()
        if self.tune.grace_period > self.train.max_epochs:
            raise ConfigError(
                f"tune.grace_period ({self.tune.grace_period}) exceeds train.max_epochs "
                f"({self.train.max_epochs})"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Build and validate a config from a nested dict (unknown keys are errors)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in sections:
                raise ConfigError(f"{key}: unknown section; sections are {', '.join(sections)}")
            section_cls = _resolve(sections[key].type)
            kwargs[key] = _build_section(key, section_cls, value or {})
        return cls(**kwargs).validate()

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """Copy with dotted-key overrides applied (``{"optim.lr": 1e-4}``), validated."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            _set_dotted(raw, dotted, value)
        return Config.from_dict(raw)


def _resolve(tp: Any) -> Any:
    if isinstance(tp, str):
        return eval(tp, globals())  # dataclass annotations are strings (PEP 563)
    return tp


def _coerce(path: str, tp: Any, value: Any) -> Any:
    tp = _resolve(tp)
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and {"yes", "no"} <= set(choices):
            value = "yes" if value else "no"  # YAML reads a bare yes/no (and on/off) as a bool
        _choice(*path.split(".", 1), value, choices)
        return value
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(path, args[0], value)
    if origin is list:
        if not isinstance(value, list | tuple):
            value = [value] if not isinstance(value, str) else [v for v in value.split(",") if v]
        (item,) = get_args(tp)
        return [_coerce(path, item, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _build_section(name: str, section_cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of fields, got {raw!r}")
    known = {f.name: f for f in fields(section_cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"{name}.{key}: unknown field; fields of '{name}' are {', '.join(known)}"
            )
        kwargs[key] = _coerce(f"{name}.{key}", known[key].type, value)
    return section_cls(**kwargs)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) < 2:
        raise ConfigError(f"{dotted}: an override needs the form section.field=value")
    node = raw
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            if node is raw:
                raise ConfigError(f"{dotted}: unknown section '{part}'")
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def parse_overrides(items: typing.Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``3e-4``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.field=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text) if text else ""
        if isinstance(value, str) and any(c.isdigit() for c in value):
            # YAML 1.1 reads '3e-4' as a string; accept it as the number it is
            with contextlib.suppress(ValueError):
                value = float(value)
        out[key.strip()] = value
    return out


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then a YAML file or preset name (optional), then ``section.field=value``."""
    raw: dict[str, Any] = {}
    if path is not None:
        from rsray.presets import resolve

        p = resolve("config", path)  # a file path, or a preset's name (`rsray presets`)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML ({exc})") from exc
    cfg = Config.from_dict(raw)
    return cfg.with_overrides(parse_overrides(overrides)) if overrides else cfg


__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScalingConfig",
    "TrainConfig",
    "TuneConfig",
    "load_config",
    "parse_overrides",
]
