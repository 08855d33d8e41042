"""The study specification: arms x factors x seeds, read from YAML and validated.

A spec names the data, the arms (one model or search space each, their modalities and fixed
parameters), the factors (training fractions, hold-out rules, seeds), the stage-1 search budget
and what stage 2 evaluates::

    spec = load_spec("studies/sen12ms_resnet.yaml", smoke=True)

``smoke:`` in the file holds overrides applied with ``--smoke-test``, ``proof:`` those applied
with ``--proof`` (the scale of the study run on its twin as a known-answer check); ``arms``
there is a mapping from arm name to the fields that change. Every bad value raises
:class:`~rsray.errors.ConfigError` naming the file and the field, in one line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsray.config import Config
from rsray.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class StudyData:
    """Which data the study runs on."""

    dataset: str = "bigearthnet"
    """Registered dataset whose synthetic twin is generated when no ``uri`` is given."""
    uri: str | None = None
    """A prepared shard set (local or ``s3://``); ``--data`` overrides it."""
    synthetic_n: int = 600
    """Samples of the synthetic twin."""
    covariates: bool = False
    """Twin only: add synthetic DEM / climate / land-cover layers and S2 indices (NDVI, NDWI)
    as modalities ``dem``, ``climate``, ``landcover``, ``indices``."""


@dataclass
class Arm:
    """One strategy under comparison."""

    name: str
    """Arm name, used in tables and figures (``s2_only``, ``early``, ``vit_sct``)."""
    model: str
    """Registered model name."""
    modalities: list[str] = field(default_factory=list)
    """Modalities fed to the model (empty: every modality of the shard set)."""
    space: str | None = None
    """Search space from :mod:`rsray.tune.spaces` for stage 1; none: no search, ``params``
    alone fix the configuration."""
    params: dict[str, Any] = field(default_factory=dict)
    """Fixed ``section.field`` overrides of this arm (``model.params.fusion_stage: 2``)."""


@dataclass
class SearchSpec:
    """Stage 1: per cell, Optuna TPE + ASHA on the validation split."""

    num_samples: int = 8
    """Trials per cell."""
    max_epochs: int = 5
    """Epochs per search trial (ASHA may stop a trial earlier)."""
    grace_period: int = 1
    """Epochs before ASHA may stop a trial."""
    reduction_factor: int = 2
    """ASHA halving rate."""


@dataclass
class Factors:
    """What varies between cells, and the seeds of stage 2."""

    fractions: list[float] = field(default_factory=lambda: [1.0])
    """Training fractions (nested seeded subsets, ``data.train_fraction``)."""
    holdouts: list[str] = field(default_factory=lambda: [""])
    """Hold-out rules of the ``ood`` split (``tile=29SND``, ``lat=40:50``; ``""``: none).
    Each rule is its own shard set: prepared from the twin, or named in ``holdout_uris``."""
    holdout_uris: dict[str, str] = field(default_factory=dict)
    """Real data: the shard set prepared with each hold-out rule (``--holdout RULE``)."""
    seeds: int = 5
    """Stage-2 retrainings of each cell's best configuration."""
    pack_seeds: int = 1
    """Stage-2 seeds of one cell trained one after another in one trial process (each with
    its own seed, so each equals its separate run); ``1``: every seed is its own trial. Packs
    pay one trial start-up and one split decode for up to this many seeds."""


@dataclass
class Evaluation:
    """What stage 2 measures after training."""

    splits: list[str] = field(default_factory=lambda: ["test"])
    """Splits scored with the best checkpoint; ``ood`` is added when the shard set has it."""
    drop_modalities: bool = True
    """Also score each split once per dropped modality (multi-modal arms only)."""
    predictions: bool = True
    """Save per-sample test predictions (for the paired bootstrap)."""


@dataclass
class StudySpec:
    """A whole study."""

    name: str
    """Study name (folder under the output root)."""
    arms: list[Arm]
    """The strategies compared."""
    baseline: str
    """Arm every other arm is compared against (e.g. the best single modality)."""
    description: str = ""
    """One paragraph: the question and the paper it follows."""
    data: StudyData = field(default_factory=StudyData)
    base: dict[str, Any] = field(default_factory=dict)
    """``section.field`` overrides of the rsray config for every arm (epochs, batch size)."""
    metrics: list[str] = field(default_factory=list)
    """Metrics shown in the comparison table (training names without split prefix); the
    first is the headline metric. Empty: the task's table metrics."""
    single_modality: list[str] = field(default_factory=list)
    """Arms that see one modality (per-class gains are measured against the best of them);
    empty: arms with exactly one modality."""
    search: SearchSpec = field(default_factory=SearchSpec)
    factors: Factors = field(default_factory=Factors)
    evaluation: Evaluation = field(default_factory=Evaluation)
    source: str = ""
    """File the spec was read from."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON serialisable)."""
        return asdict(self)

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        return next(a for a in self.arms if a.name == name)

    def single_modality_arms(self) -> list[str]:
        """Arms counted as single-modality."""
        return self.single_modality or [a.name for a in self.arms if len(a.modalities) == 1]

    def arm_config(self, arm: Arm, overrides: dict[str, Any] | None = None) -> Config:
        """The rsray config of ``arm``: defaults, ``base``, the arm, then ``overrides``."""
        flat = {**self.base, "model.name": arm.model, "data.modalities": list(arm.modalities),
                **arm.params, **(overrides or {})}
        return Config().with_overrides(flat)


def _fields(cls: type) -> dict[str, Any]:
    return {f.name: f for f in cls.__dataclass_fields__.values()}


def _expect(where: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str, **fixed: Any) -> Any:
    """Dataclass ``cls`` from mapping ``raw``; unknown keys and wrong types are errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    known = _fields(cls)
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown field; fields are {', '.join(known)}")
    kwargs = {**raw, **fixed}
    missing = [k for k, f in known.items() if k not in kwargs
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required field is missing")
    return cls(**kwargs)


def _flat(where: str, raw: Any) -> dict[str, Any]:
    """``{"train": {"max_epochs": 3}}`` or ``{"train.max_epochs": 3}`` -> dotted keys."""
    if raw is None:
        return {}
    _expect(where, raw, dict, "a mapping of section.field overrides")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and "." not in str(key) and key != "model.params":
            for sub, v in _flat(f"{where}.{key}", value).items():
                out[f"{key}.{sub}"] = v
        else:
            out[str(key)] = value
    return out


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


VARIANTS = ("smoke", "proof")
"""Top-level sections of a spec that hold overrides selected on the command line."""


def apply_variant(raw: dict[str, Any], where: str, variant: str) -> dict[str, Any]:
    """``raw`` with its ``<variant>:`` overrides applied (``<variant>.arms``: name -> fields)."""
    smoke = raw.get(variant)
    if smoke is None:
        raise ConfigError(f"{where}: {variant}: this spec has no {variant} variant")
    _expect(f"{where}: {variant}", smoke, dict, "a mapping")
    out = {k: v for k, v in raw.items() if k not in VARIANTS}
    arms_over = smoke.get("arms", {})
    _expect(f"{where}: {variant}.arms", arms_over, dict, "a mapping from arm name to fields")
    names = [a.get("name") for a in out.get("arms", []) if isinstance(a, dict)]
    for name in arms_over:
        if name not in names:
            raise ConfigError(f"{where}: {variant}.arms.{name}: no arm of that name "
                              f"({', '.join(map(str, names))})")
    out["arms"] = [_merge(a, arms_over.get(a.get("name"), {})) if isinstance(a, dict) else a
                   for a in out.get("arms", [])]
    for key, value in smoke.items():
        if key != "arms":
            out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def apply_smoke(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with its ``smoke:`` overrides applied (``smoke.arms``: name -> fields)."""
    return apply_variant(raw, where, "smoke")


def spec_from_dict(raw: Any, where: str = "spec") -> StudySpec:
    """Build and validate a :class:`StudySpec` from a parsed YAML mapping."""
    from rsray.data.registry import list_datasets
    from rsray.models import list_models
    from rsray.tune.spaces import list_spaces

    _expect(where, raw, dict, "a mapping")
    raw = {k: v for k, v in raw.items() if k not in VARIANTS}
    p = f"{where}: "
    name = _expect(p + "name", raw.get("name"), str, "a study name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"{p}name: {name!r} must be letters, digits, '_', '-', '.'")
    arms_raw = _expect(p + "arms", raw.get("arms"), list, "a list of arms")
    if not arms_raw:
        raise ConfigError(f"{p}arms: at least one arm is needed")
    arms: list[Arm] = []
    models, spaces = list_models(), list_spaces()
    for i, a in enumerate(arms_raw):
        w = f"{p}arms[{i}]"
        arm = _build(Arm, a, w)
        if not isinstance(arm.name, str) or not _NAME.match(arm.name):
            raise ConfigError(f"{w}.name: {arm.name!r} must be an identifier (s2_only, early)")
        if arm.name in [b.name for b in arms]:
            raise ConfigError(f"{w}.name: {arm.name!r} names two arms")
        w = f"{p}arms.{arm.name}"
        if arm.model not in models:
            raise ConfigError(f"{w}.model: {arm.model!r} is not a registered model "
                              "(`rsray models` lists them)")
        if arm.space is not None and arm.space not in spaces:
            raise ConfigError(f"{w}.space: {arm.space!r} is not a search space; choose one of "
                              + ", ".join(spaces))
        arm.modalities = [str(m) for m in _expect(f"{w}.modalities", arm.modalities or [],
                                                  list, "a list of modality names")]
        arm.params = _flat(f"{w}.params", arm.params)
        arms.append(arm)
    baseline = _expect(p + "baseline", raw.get("baseline"), str, "the name of an arm")
    if baseline not in [a.name for a in arms]:
        raise ConfigError(f"{p}baseline: {baseline!r} is not an arm ("
                          + ", ".join(a.name for a in arms) + ")")
    data = _build(StudyData, raw.get("data") or {}, p + "data")
    if data.uri is None and data.dataset not in list_datasets():
        raise ConfigError(f"{p}data.dataset: {data.dataset!r} has no synthetic twin; choose "
                          "one of " + ", ".join(list_datasets()))
    _expect(p + "data.synthetic_n", data.synthetic_n, int, "an integer")
    if data.synthetic_n < 16:
        raise ConfigError(f"{p}data.synthetic_n: {data.synthetic_n} is too few samples (>= 16)")
    search = _build(SearchSpec, raw.get("search") or {}, p + "search")
    for key in ("num_samples", "max_epochs", "grace_period"):
        value = _expect(f"{p}search.{key}", getattr(search, key), int, "an integer")
        if value < 1:
            raise ConfigError(f"{p}search.{key}: {value} must be >= 1")
    if search.grace_period > search.max_epochs:
        raise ConfigError(f"{p}search.grace_period: {search.grace_period} exceeds "
                          f"search.max_epochs ({search.max_epochs})")
    factors = _build(Factors, raw.get("factors") or {}, p + "factors")
    _expect(p + "factors.seeds", factors.seeds, int, "an integer")
    _expect(p + "factors.pack_seeds", factors.pack_seeds, int, "an integer")
    if factors.pack_seeds < 1:
        raise ConfigError(f"{p}factors.pack_seeds: {factors.pack_seeds} must be >= 1")
    if factors.seeds < 1:
        raise ConfigError(f"{p}factors.seeds: {factors.seeds} must be >= 1")
    fr = _expect(p + "factors.fractions", factors.fractions, list, "a list of fractions")
    if not fr or any(isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1
                     for f in fr):
        raise ConfigError(f"{p}factors.fractions: {fr!r} must be numbers in (0, 1]")
    if len(set(fr)) != len(fr):
        raise ConfigError(f"{p}factors.fractions: {fr!r} lists a fraction twice")
    factors.fractions = [float(f) for f in fr]
    ho = _expect(p + "factors.holdouts", factors.holdouts, list, "a list of hold-out rules")
    if not ho or len(set(ho)) != len(ho) or any(not isinstance(h, str) for h in ho):
        raise ConfigError(f"{p}factors.holdouts: {ho!r} must be distinct strings "
                          "(KEY=VALUES, or '' for none)")
    for h in ho:
        if h and "=" not in h:
            raise ConfigError(f"{p}factors.holdouts: {h!r} is not KEY=VALUES (tile=29SND)")
    evaluation = _build(Evaluation, raw.get("evaluation") or {}, p + "evaluation")
    if not evaluation.splits or any(s in ("train", "val") for s in evaluation.splits):
        raise ConfigError(f"{p}evaluation.splits: {evaluation.splits!r} must name held-out "
                          "splits (test, ood), not train/val")
    metrics = _expect(p + "metrics", raw.get("metrics") or [], list, "a list of metric names")
    single = _expect(p + "single_modality", raw.get("single_modality") or [], list,
                     "a list of arm names")
    for s in single:
        if s not in [a.name for a in arms]:
            raise ConfigError(f"{p}single_modality: {s!r} is not an arm")
    for key in raw:
        if key not in _fields(StudySpec) or key == "source":
            raise ConfigError(f"{p}{key}: unknown field; fields are "
                              + ", ".join(k for k in _fields(StudySpec) if k != "source"))
    spec = StudySpec(
        name=name, arms=arms, baseline=baseline,
        description=str(raw.get("description") or "").strip(), data=data,
        base=_flat(p + "base", raw.get("base")), metrics=[str(m) for m in metrics],
        single_modality=[str(s) for s in single], search=search, factors=factors,
        evaluation=evaluation, source=where,
    )
    for arm in arms:  # every arm's config must be a valid rsray config
        try:
            spec.arm_config(arm)
        except ConfigError as exc:
            raise ConfigError(f"{p}arms.{arm.name} (with base): {exc}") from None
    return spec


def load_spec(path: str | Path, *, smoke: bool = False, proof: bool = False) -> StudySpec:
    """Read, apply the ``smoke:`` (``smoke``) or ``proof:`` (``proof``) overrides, validate.

    The variant's name is appended to the study's (``vit_bigearthnet-proof``), so its folder
    never collides with the full study's.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study spec not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if smoke and proof:
        raise ConfigError(f"{path}: choose one of --smoke-test and --proof")
    for variant, chosen in (("smoke", smoke), ("proof", proof)):
        if chosen:
            raw = apply_variant(raw, str(path), variant)
            raw["name"] = f"{raw.get('name', 'study')}-{variant}"
    return spec_from_dict(raw, str(path))


__all__ = ["VARIANTS", "Arm", "Evaluation", "Factors", "SearchSpec", "StudyData", "StudySpec",
           "apply_smoke", "apply_variant", "load_spec", "spec_from_dict"]
