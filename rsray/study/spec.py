"""The study specification: arms x factors x seeds, read from YAML and validated.

A spec names the data, the arms (one model or search space each, their modalities and fixed
parameters), the factors (training fractions, hold-out rules, seeds), the stage-1 search budget
and what stage 2 evaluates::

    spec = load_spec("studies/sen12ms_resnet.yaml", variant="tuned", proof=True)

``base_config:`` names a config file (``configs/<seed>.yaml``, relative to the spec file)
every arm starts from: an arm's config is rsray's defaults, then that file's ``data``,
``optim``, ``train``, ``scaling`` and ``tracking`` sections (its ``model`` and ``tune`` are
not used: every arm names its model, the spec's ``search`` is the search), then the spec's
``base``, then the chosen variant, then the arm's ``params``.

``variants:`` holds the protocols selected with ``--variant`` (``paper``: the paper's recipe;
``tuned``: a search shared by every arm); each is an overlay of spec fields, ``arms`` there a
mapping from arm name to the fields that change, ``exclude_arms`` the arms it leaves out.
``smoke:`` and ``proof:`` are overlays of the same form applied after the variant with
``--smoke-test`` and ``--proof``; they only shrink the study (model width, data, epochs,
seeds, trials). Every bad value raises :class:`~rsray.errors.ConfigError` naming the file and
the field, in one line.
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
    init: str = ""
    """The paper's initialisation: the timm name (with its pretrained tag) of the weights
    ``model.params.pretrained_file`` holds (``resnet50.tv_in1k``); empty: random init."""
    recipe: str = ""
    """The paper's multi-run recipe this arm is trained with (a name of
    :data:`rsray.recipes.RECIPES`: ``lf_dlm``); each seed is one run of it. Empty: one run."""


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


PACK_MODES = ("auto", "vmap", "sequential")
"""``factors.pack_mode`` values (:mod:`rsray.study.packing`)."""


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
    """Stage-2 seeds of one cell trained in one trial process (each with its own seed, so
    each equals its separate run); ``1``: every seed is its own trial. Packs pay one trial
    start-up and one split decode for up to this many seeds."""
    pack_mode: str = "auto"
    """How a pack's seeds train: ``vmap`` as one vectorised step (K models stacked under
    ``torch.func.vmap``; model families without BatchNorm, one-worker runs), ``sequential``
    one after another, ``auto`` vectorised where the pack qualifies and its runs use a GPU
    (on CPU cores a vectorised step is not faster), else sequential."""


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
    base_config: str = ""
    """Config file every arm starts from (resolved relative to the spec file); its values
    are already part of ``base``."""
    variant: str = ""
    """The variant this spec was loaded with (``paper``, ``tuned``; empty: none)."""
    paper_results: dict[str, dict[str, float]] = field(default_factory=dict)
    """The paper's published values: arm name -> metric name (as in ``metrics``) -> value.
    Only the arms and metrics the paper reports."""
    paper_source: str = ""
    """Where ``paper_results`` come from (paper, table, split)."""
    class_metric: str = ""
    """Per-class metric prefix the paper shows (``acc_class/``); empty: the report's choice."""
    not_searched: dict[str, str] = field(default_factory=dict)
    """Design-card search dimensions this variant does not search, each with the reason
    (``patch_size: a CNN has no patches``)."""
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
"""Top-level sections of a spec that hold shrink-only overrides selected on the command line."""

OVERLAYS = (*VARIANTS, "variants", "default_variant")
"""Top-level keys that are overlays (or name one), not spec fields."""


def _overlay(raw: dict[str, Any], where: str, label: str, over: Any,
             known: list[str]) -> dict[str, Any]:
    """``raw`` with overlay ``over`` applied (``arms``: name -> fields; ``exclude_arms``).

    ``known`` are the arm names of the whole spec: an overlay may name an arm an earlier
    overlay excluded (smoke sizes for every arm of every variant).
    """
    _expect(f"{where}: {label}", over, dict, "a mapping")
    out = {k: v for k, v in raw.items() if k != label}
    if label not in VARIANTS:
        out.pop("variants", None)
        out.pop("default_variant", None)
    arms_over = over.get("arms") or {}
    _expect(f"{where}: {label}.arms", arms_over, dict, "a mapping from arm name to fields")
    exclude = over.get("exclude_arms") or []
    _expect(f"{where}: {label}.exclude_arms", exclude, list, "a list of arm names")
    for name in [*arms_over, *exclude]:
        if name not in known:
            raise ConfigError(f"{where}: {label}.arms.{name}: no arm of that name "
                              f"({', '.join(map(str, known))})")
    out["arms"] = [_merge(a, arms_over.get(a.get("name"), {})) if isinstance(a, dict) else a
                   for a in out.get("arms", []) if not isinstance(a, dict)
                   or a.get("name") not in exclude]
    for key, value in over.items():
        if key not in ("arms", "exclude_arms"):
            out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    if exclude:  # the paper's values and the single-modality list follow the arms
        kept = [a.get("name") for a in out["arms"] if isinstance(a, dict)]
        if isinstance(out.get("paper_results"), dict):
            out["paper_results"] = {k: v for k, v in out["paper_results"].items() if k in kept}
        if isinstance(out.get("single_modality"), list):
            out["single_modality"] = [s for s in out["single_modality"] if s in kept]
    return out


def _arm_names(raw: dict[str, Any]) -> list[str]:
    return [a.get("name") for a in raw.get("arms") or [] if isinstance(a, dict)]


def apply_variant(raw: dict[str, Any], where: str, variant: str,
                  known: list[str] | None = None) -> dict[str, Any]:
    """``raw`` with one overlay applied.

    ``smoke`` or ``proof`` (top-level sections), or a protocol of its ``variants:``
    (``paper``, ``tuned``).
    """
    protocols = raw.get("variants") or {}
    over = raw.get(variant) if variant in VARIANTS else protocols.get(variant)
    if over is None:
        have = sorted(raw.get("variants") or {}) + [v for v in VARIANTS if v in raw]
        raise ConfigError(f"{where}: {variant}: this spec has no {variant} variant "
                          f"({', '.join(have) or 'it has none'})")
    return _overlay(raw, where, variant, over, known or _arm_names(raw))


def apply_smoke(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with its ``smoke:`` overrides applied (``smoke.arms``: name -> fields)."""
    return apply_variant(raw, where, "smoke")


_CONFIG_SECTIONS = ("data", "optim", "train", "scaling", "tracking")
"""Sections of a ``base_config`` file a study uses (``model``: each arm's; ``tune``: the
spec's ``search``)."""


def base_config_overrides(path: Path, where: str) -> dict[str, Any]:
    """The ``section.field`` values of config file ``path`` a study's arms start from.

    Raises:
        ConfigError: the file is missing or not a valid rsray config.
    """
    from rsray.config import load_config

    if not path.is_file():
        raise ConfigError(f"{where}: base_config: {path} not found")
    try:
        cfg = load_config(path).to_dict()
    except ConfigError as exc:
        raise ConfigError(f"{where}: base_config: {exc}") from None
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for section in _CONFIG_SECTIONS:  # only the fields the file sets: defaults stay defaults
        for key in raw.get(section) or {}:
            out[f"{section}.{key}"] = copy.deepcopy(cfg[section][key])
    return out


def spec_from_dict(raw: Any, where: str = "spec", *, root: Path | None = None,
                   variant: str = "") -> StudySpec:
    """Build and validate a :class:`StudySpec` from a parsed YAML mapping.

    ``root``: the folder ``base_config`` is relative to (the spec file's; default the
    working directory). ``variant``: the name of the variant already applied to ``raw``.
    """
    from rsray.data.registry import list_datasets
    from rsray.models import list_models
    from rsray.tune.spaces import list_spaces

    _expect(where, raw, dict, "a mapping")
    raw = {k: v for k, v in raw.items() if k not in OVERLAYS}
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
        for key in ("init", "recipe"):
            _expect(f"{w}.{key}", getattr(arm, key), str, "a string")
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
    if factors.pack_mode not in PACK_MODES:
        raise ConfigError(f"{p}factors.pack_mode: {factors.pack_mode!r} must be one of "
                          f"{', '.join(PACK_MODES)}")
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
    from rsray.train.metric_names import check_metric

    for i, metric in enumerate(metrics):  # the data's task is checked by `rsray study --check`
        check_metric(str(metric), f"{p}metrics[{i}]")
    single = _expect(p + "single_modality", raw.get("single_modality") or [], list,
                     "a list of arm names")
    for s in single:
        if s not in [a.name for a in arms]:
            raise ConfigError(f"{p}single_modality: {s!r} is not an arm")
    internal = ("source", "variant")
    for key in raw:
        if key not in _fields(StudySpec) or key in internal:
            raise ConfigError(f"{p}{key}: unknown field; fields are " + ", ".join(
                [k for k in _fields(StudySpec) if k not in internal] + list(OVERLAYS)))
    base = _flat(p + "base", raw.get("base"))
    base_config = _expect(p + "base_config", raw.get("base_config") or "", str, "a file path")
    if base_config:
        file = (root or Path.cwd()) / base_config
        base = {**base_config_overrides(file, where), **base}
    names = [a.name for a in arms]
    base = _absolute_weights(base, Path.cwd())
    for arm in arms:
        arm.params = _absolute_weights(arm.params, Path.cwd())
    spec = StudySpec(
        name=name, arms=arms, baseline=baseline,
        description=str(raw.get("description") or "").strip(), data=data,
        base=base, metrics=[str(m) for m in metrics],
        single_modality=[str(s) for s in single], search=search, factors=factors,
        evaluation=evaluation, base_config=base_config, variant=variant,
        paper_results=_paper_results(p, raw.get("paper_results"), names, metrics),
        paper_source=_expect(p + "paper_source", raw.get("paper_source") or "", str,
                             "a string"),
        class_metric=_expect(p + "class_metric", raw.get("class_metric") or "", str,
                             "a metric prefix (acc_class/)"),
        not_searched=_str_map(p + "not_searched", raw.get("not_searched")),
        source=where,
    )
    for arm in arms:  # every arm's config must be a valid rsray config
        try:
            cfg = spec.arm_config(arm)
        except ConfigError as exc:
            raise ConfigError(f"{p}arms.{arm.name} (with base): {exc}") from None
        if arm.recipe:
            from rsray.study.recipe_arm import check_recipe_arm

            check_recipe_arm(f"{p}arms.{arm.name}", arm.recipe, arm.space, cfg)
    return spec


def _str_map(where: str, raw: Any) -> dict[str, str]:
    """A mapping of strings to strings (``not_searched``)."""
    raw = _expect(where, raw or {}, dict, "a mapping of names to reasons")
    for key, value in raw.items():
        _expect(f"{where}.{key}", value, str, "a reason (a string)")
    return {str(k): v for k, v in raw.items()}


def _paper_results(p: str, raw: Any, arms: list[str],
                   metrics: list[Any]) -> dict[str, dict[str, float]]:
    """``paper_results``: arm -> metric (one of ``metrics``) -> number."""
    raw = _expect(p + "paper_results", raw or {}, dict, "a mapping arm -> metric -> value")
    out: dict[str, dict[str, float]] = {}
    for arm, values in raw.items():
        if arm not in arms:
            raise ConfigError(f"{p}paper_results.{arm}: not an arm ({', '.join(arms)})")
        _expect(f"{p}paper_results.{arm}", values, dict, "a mapping metric -> value")
        out[arm] = {}
        for metric, value in values.items():
            if metric not in metrics:
                raise ConfigError(f"{p}paper_results.{arm}.{metric}: not one of the spec's "
                                  "metrics")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{p}paper_results.{arm}.{metric}: expected a number, got "
                                  f"{value!r}")
            out[arm][str(metric)] = float(value)
    return out


def load_spec(path: str | Path, *, smoke: bool = False, proof: bool = False,
              variant: str | None = None) -> StudySpec:
    """Read, apply the variant, then the ``smoke:`` or ``proof:`` overrides, and validate.

    The variant is ``paper`` or ``tuned`` (default: the spec's ``default_variant``). The
    names of the variant and of smoke/proof are appended to the study's
    (``sen12ms_resnet-tuned-proof``), so their folders never collide.
    """
    from rsray.presets import resolve

    path = resolve("study", path)  # a file path, or a preset's name (`rsray presets`)
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
    known = _arm_names(raw)
    protocols = raw.get("variants")
    if protocols is not None:
        _expect(f"{path}: variants", protocols, dict, "a mapping of variant name to overlay")
    chosen_variant = variant or raw.get("default_variant") or ""
    if chosen_variant:
        raw = apply_variant(raw, str(path), str(chosen_variant), known)
        raw["name"] = f"{raw.get('name', 'study')}-{chosen_variant}"
    elif protocols:
        raise ConfigError(f"{path}: default_variant: this spec has variants ("
                          f"{', '.join(protocols)}); name one with --variant")
    for scale, chosen in (("smoke", smoke), ("proof", proof)):
        if chosen:
            raw = apply_variant(raw, str(path), scale, known)
            raw["name"] = f"{raw.get('name', 'study')}-{scale}"
    return spec_from_dict(raw, str(path), root=path.parent, variant=str(chosen_variant))


def weight_files(params: Any) -> list[str]:
    """Every ``pretrained_file`` in model parameters (nested branch dicts included)."""
    out: list[str] = []
    if isinstance(params, dict):
        for key, value in params.items():
            if key == "pretrained_file" and isinstance(value, str):
                out.append(value)
            elif key == "pretrained_file" and isinstance(value, dict):
                out += [str(v) for v in value.values()]
            else:
                out += weight_files(value)
    return out


def _absolute_weights(value: Any, cwd: Path) -> Any:
    """``value`` with every relative ``pretrained_file`` made absolute against ``cwd``.

    The trials of a study do not run in the working directory the spec was loaded from.
    """

    def fix(f: Any) -> Any:
        return str(cwd / f) if isinstance(f, str) and not Path(f).is_absolute() else f

    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, v in value.items():
        if str(key).endswith("pretrained_file"):
            out[key] = {m: fix(f) for m, f in v.items()} if isinstance(v, dict) else fix(v)
        else:
            out[key] = _absolute_weights(v, cwd)
    return out


def check_runnable(spec: StudySpec) -> None:
    """Refuse, in one line, a spec the study runner cannot run as written.

    That is a ``pretrained_file`` that is not on disk (the line says how to fetch it on a
    connected machine). Call before starting Ray.
    """
    where = spec.source or spec.name
    for arm in spec.arms:
        for f in weight_files(spec.arm_config(arm).model.params):
            if not Path(f).is_file():
                name = arm.init or "<the timm model>"
                raise ConfigError(
                    f"{where}: arms.{arm.name}: model.params.pretrained_file {f} not found "
                    f"(the paper's {name} weights); on a machine with internet: python -c "
                    f"\"import timm, torch; torch.save(timm.create_model('{name}', "
                    f"pretrained=True).state_dict(), '{f}')\" and copy it here")


__all__ = ["OVERLAYS", "VARIANTS", "Arm", "Evaluation", "Factors", "SearchSpec", "StudyData",
           "StudySpec", "apply_smoke", "apply_variant", "base_config_overrides",
           "check_runnable", "load_spec", "spec_from_dict", "weight_files"]
