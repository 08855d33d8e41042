"""The YAML description of a user's own dataset, parsed and validated (no file is opened here).

A dataset file names its modalities (where the files are and how a path gives the sample id,
the band and the date), its labels, its splits and its groups::

    name: my_chips
    modalities:
      s2: {root: s2, pattern: "{id}.tif", bands: [B02, B03, B04, B08]}
      s1: {root: s1, pattern: "{id}.tif", bands: [VV, VH]}
    labels: {file: labels.csv, id_column: id, class_column: label}
    splits: {column: split}

Every bad value raises :class:`~rsray.errors.ConfigError` naming the file and the key. The
keys of TerraTorch's ``GenericMultiModalDataModule`` (``modalities`` as a list,
``train_data_root``/``val_data_root``/``test_data_root``, ``image_grep``, ``label_grep``,
``train_split``/``val_split``/``test_split``, ``means``/``stds``, ``allow_missing_modalities``,
``class_names``) are accepted and translated (:mod:`.terratorch`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsray.errors import ConfigError
from rsray.storage import StorageOptions, is_remote_url, join_url, read_bytes

KINDS = ("image", "series", "table")
"""Modality kinds: one raster per sample, several dated rasters per sample, table columns."""
TASKS = ("multiclass", "multilabel", "regression", "segmentation")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
"""Split names accepted in a split column (case-insensitive) -> rsray's name."""
_MOD_NAME = re.compile(r"^[a-z][a-z0-9]*$")
_FIELD = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")
RESERVED_FIELDS = ("id", "band", "date")


@dataclass
class RootSpec:
    """One folder of a modality, optionally tied to a split (TerraTorch's per-split roots)."""

    path: str
    split: str | None = None


@dataclass
class ModalityConfig:
    """One modality of the dataset."""

    name: str
    roots: list[RootSpec]
    """Folders (local or ``s3://``) searched recursively for the modality's files."""
    regex: re.Pattern[str] | None = None
    """Compiled path pattern (relative path from the root); named groups ``id`` (required),
    ``band``, ``date`` and any other name (a group)."""
    kind: str = "image"
    bands: tuple[str, ...] = ()
    """Band names: of a multi-band file in file order, or the ``{band}`` values of a file per
    band (in channel order)."""
    file_per_band: bool = False
    nodata: float | None = None
    """Nodata value (``nan`` allowed); ``None``: the file's own nodata tag, if any."""
    max_nodata: float = 0.5
    """Largest accepted share of nodata pixels in any band of a sample."""
    fill: float = 0.0
    """What NaN nodata pixels become (integer nodata values are kept as they are)."""
    reproject: bool = False
    """Warp onto the reference grid instead of rejecting a CRS/bounds mismatch."""
    resampling: str = "bilinear"
    max_len: int = 0
    """Series: most dates per sample (0: the largest number found)."""
    file: str = ""
    """Table: the CSV/Parquet file."""
    id_column: str = "id"
    columns: tuple[str, ...] = ()
    """Table: the feature columns."""
    date_format: str = ""
    """Series: ``strptime`` format of ``{date}`` (default: the first 8 digits as YYYYMMDD)."""
    id_json: tuple[str, str] | None = None
    """``(file template, key)``: the sample id is the value of ``key`` in a JSON file next to
    the modality's files (template with ``{id}`` = the id the pattern found), e.g. a radar
    patch naming its optical partner (``corresponding_s2_patch``)."""


@dataclass
class LabelsConfig:
    """Where the labels come from."""

    task: str
    file: str = ""
    id_column: str = "id"
    class_column: str = ""
    labels_column: str = ""
    separator: str = ""
    class_columns: tuple[str, ...] = ()
    target_columns: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    """Class order (multiclass/multilabel: default sorted names found; segmentation: required,
    index = mask value)."""
    mask: ModalityConfig | None = None
    """Segmentation: the mask rasters (a pattern with ``{id}``)."""
    json: ModalityConfig | None = None
    """A JSON file per sample holding a list of class names under :attr:`json_key`."""
    json_key: str = "labels"
    field: str = ""
    """A named field of a modality's pattern holding the class (``{label}/{id}.tif``)."""
    field_modality: str = ""


@dataclass
class SplitsConfig:
    """How samples are assigned to train / val / test."""

    mode: str = "random"
    """``column`` (of the label table), ``files`` (lists of ids), ``roots`` (per-split roots),
    ``random`` (seeded hash of the sample id or of a group)."""
    column: str = ""
    files: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    by: str = ""
    """Random mode: the group whose value is hashed (all samples of a group share a split)."""


@dataclass
class GroupConfig:
    """A per-sample group: a label-table column or a named field of a modality's pattern."""

    name: str
    column: str = ""
    field: str = ""
    modality: str = ""


@dataclass
class FilesConfig:
    """A whole dataset description."""

    name: str
    modalities: list[ModalityConfig]
    labels: LabelsConfig
    splits: SplitsConfig
    groups: list[GroupConfig] = field(default_factory=list)
    allow_missing_modalities: bool = False
    tolerance: float | None = None
    """Co-registration tolerance on bounds in CRS units (default: half a reference pixel)."""
    means: dict[str, list[float]] = field(default_factory=dict)
    stds: dict[str, list[float]] = field(default_factory=dict)
    source: str = ""
    """The YAML file."""

    @property
    def image_modalities(self) -> list[ModalityConfig]:
        """Raster modalities (image and series)."""
        return [m for m in self.modalities if m.kind != "table"]


# --------------------------------------------------------------------------------------------
# Path patterns
# --------------------------------------------------------------------------------------------


def template_to_regex(template: str) -> str:
    """``{id}/{date}/{band}.tif`` -> a regex with named groups over the relative path.

    ``{name}`` matches one path component part (no ``/``); a repeated field must repeat the
    same text; ``*`` matches within a component and ``**/`` any folders.
    """
    out, seen, pos = [], set(), 0
    for m in _FIELD.finditer(template):
        out.append(_glob_part(template[pos:m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+?)")
        seen.add(name)
        pos = m.end()
    out.append(_glob_part(template[pos:]))
    return "^" + "".join(out) + "$"


def _glob_part(text: str) -> str:
    text = re.escape(text).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    return text.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")


def grep_to_regex(grep: str) -> str:
    """TerraTorch's ``image_grep`` (``*_S2.tif``): the first ``*`` is the sample id."""
    if "{" in grep:
        return template_to_regex(grep)
    if "*" not in grep:
        raise ConfigError(f"grep {grep!r}: needs a '*' standing for the sample id")
    head, _, tail = grep.partition("*")
    return template_to_regex(f"**/{head}{{id}}{tail}")


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


class _Where:
    """Builds ``file: key.sub`` prefixes for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {what}")


def _resolve(path: str, base: Path | str) -> str:
    """``path`` relative to ``base`` (the YAML's folder: a local path or a URL)."""
    if is_remote_url(path) or os.path.isabs(path):
        return path
    if is_remote_url(str(base)):
        return join_url(str(base), path)
    return str((Path(base) / path).resolve())


def _strs(w: _Where, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise w.err(key, f"expected a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def _known(w: _Where, key: str, raw: dict[str, Any], allowed: set[str]) -> None:
    for k in raw:
        if k not in allowed:
            raise w.err(f"{key}.{k}" if key else str(k),
                        "unknown key; known keys are " + ", ".join(sorted(allowed)))


def _float(w: _Where, key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise w.err(key, f"expected a number, got {value!r}") from None


_MOD_KEYS = {"root", "roots", "pattern", "regex", "glob", "kind", "bands", "nodata",
             "max_nodata", "fill", "reproject", "resampling", "max_len", "file", "id_column",
             "columns", "date_format", "id_json"}


def _modality(w: _Where, name: str, raw: Any, base: Path | str, *,
              label: bool = False) -> ModalityConfig:
    key = name if label else f"modalities.{name}"
    if not label and not _MOD_NAME.match(name):
        raise w.err(key, "modality names are lower-case letters and digits, starting with a "
                         "letter (s2, s1, dem): '_' separates a modality from its derived "
                         "inputs (s2_mask)")
    if not isinstance(raw, dict):
        raise w.err(key, f"expected a mapping (root, pattern, bands, ...), got {raw!r}")
    _known(w, key, raw, _MOD_KEYS)
    kind = str(raw.get("kind", "table" if "file" in raw and "pattern" not in raw else "image"))
    if kind not in KINDS:
        raise w.err(f"{key}.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if kind == "table":
        if not raw.get("file"):
            raise w.err(f"{key}.file", "a table modality needs the CSV/Parquet file")
        cols = _strs(w, f"{key}.columns", raw.get("columns"))
        if not cols:
            raise w.err(f"{key}.columns", "name the feature columns of the table")
        return ModalityConfig(name=name, roots=[], kind=kind, bands=cols,
                              file=_resolve(str(raw["file"]), base),
                              id_column=str(raw.get("id_column", "id")), columns=cols)
    roots_raw = raw.get("roots", raw.get("root"))
    if roots_raw is None:
        raise w.err(f"{key}.root", "missing: the folder (local or s3://) holding the files")
    roots: list[RootSpec] = []
    if isinstance(roots_raw, str):
        roots.append(RootSpec(_resolve(roots_raw, base)))
    elif isinstance(roots_raw, dict):  # {train: path, val: path, test: path}
        for split, path in roots_raw.items():
            if split not in SPLITS:
                raise w.err(f"{key}.roots.{split}", "per-split roots are train, val, test")
            roots.append(RootSpec(_resolve(str(path), base), split))
    else:
        raise w.err(f"{key}.root", f"expected a folder or {{train: .., val: ..}}, got "
                                   f"{roots_raw!r}")
    given = [k for k in ("pattern", "regex", "glob") if raw.get(k)]
    if len(given) != 1:
        raise w.err(key, "give exactly one of pattern ({id}/{band}.tif), regex (named groups "
                         "id, band, date) or glob (*_S2.tif)")
    text = str(raw[given[0]])
    rx = (template_to_regex(text) if given[0] == "pattern" else
          grep_to_regex(text) if given[0] == "glob" else text)
    try:
        regex = re.compile(rx)
    except re.error as exc:
        raise w.err(f"{key}.{given[0]}", f"{text!r} is not a valid pattern ({exc})") from None
    if "id" not in regex.groupindex:
        raise w.err(f"{key}.{given[0]}", f"{text!r} has no id field ({{id}} or (?P<id>...))")
    per_band = "band" in regex.groupindex
    if kind == "series" and "date" not in regex.groupindex:
        raise w.err(f"{key}.{given[0]}", "a series needs a date field ({date} or (?P<date>...))")
    if kind == "image" and "date" in regex.groupindex:
        raise w.err(f"{key}.kind", "the pattern has a date field: use kind: series for "
                                   "several dates per sample")
    bands = _strs(w, f"{key}.bands", raw.get("bands"))
    if per_band and not bands:
        raise w.err(f"{key}.bands", "list the bands: the pattern has a {band} field, and the "
                                    "list fixes which band files a sample needs and their order")
    if len(set(bands)) != len(bands):
        raise w.err(f"{key}.bands", f"{list(bands)} names a band twice")
    nodata = raw.get("nodata")
    max_nodata = _float(w, f"{key}.max_nodata", raw.get("max_nodata", 0.5))
    if not 0.0 <= max_nodata <= 1.0:
        raise w.err(f"{key}.max_nodata", f"{max_nodata} must be a share in [0, 1]")
    max_len = raw.get("max_len", 0)
    if not isinstance(max_len, int) or max_len < 0:
        raise w.err(f"{key}.max_len", f"{max_len!r} must be a whole number >= 0")
    resampling = str(raw.get("resampling", "bilinear"))
    if resampling not in ("nearest", "bilinear", "cubic", "average"):
        raise w.err(f"{key}.resampling", f"{resampling!r} is not nearest, bilinear, cubic or "
                                         "average")
    id_json = raw.get("id_json")
    if id_json is not None and (not isinstance(id_json, dict) or set(id_json) != {"file", "key"}
                                or "{id}" not in str(id_json["file"])):
        raise w.err(f"{key}.id_json", "expected {file: '{id}/{id}.json', key: <json key>} (the "
                                      "file template needs {id})")
    return ModalityConfig(
        id_json=(str(id_json["file"]), str(id_json["key"])) if id_json else None,
        name=name, roots=roots, regex=regex, kind=kind, bands=bands, file_per_band=per_band,
        nodata=None if nodata is None else _float(w, f"{key}.nodata", nodata),
        max_nodata=max_nodata, fill=_float(w, f"{key}.fill", raw.get("fill", 0.0)),
        reproject=bool(raw.get("reproject", False)), resampling=resampling, max_len=max_len,
        date_format=str(raw.get("date_format", "")),
    )


_LABEL_KEYS = {"file", "id_column", "class_column", "labels_column", "separator",
               "class_columns", "target_columns", "classes", "mask", "json", "key", "task",
               "field", "modality"}


def _labels(w: _Where, raw: Any, base: Path | str) -> LabelsConfig:
    if not isinstance(raw, dict):
        raise w.err("labels", f"expected a mapping (file, id_column, class_column, ...), got "
                              f"{raw!r}")
    _known(w, "labels", raw, _LABEL_KEYS)
    classes = _strs(w, "labels.classes", raw.get("classes"))
    ways = [k for k in ("class_column", "labels_column", "class_columns", "target_columns",
                        "mask", "json", "field") if raw.get(k)]
    if len(ways) != 1:
        raise w.err("labels", "give exactly one of class_column (multiclass), labels_column + "
                              "separator or class_columns (multilabel), target_columns "
                              "(regression), mask (segmentation), json (a label file per "
                              "sample), field (a folder or name part of the path); found "
                              f"{ways or 'none'}")
    way = ways[0]
    task = {"class_column": "multiclass", "labels_column": "multilabel",
            "class_columns": "multilabel", "target_columns": "regression",
            "mask": "segmentation", "json": "multilabel", "field": "multiclass"}[way]
    if raw.get("task") and raw["task"] != task:
        raise w.err("labels.task", f"{raw['task']!r} does not fit labels.{way} ({task})")
    out = LabelsConfig(task=task, classes=classes, id_column=str(raw.get("id_column", "id")))
    if way == "field":
        out.field, out.field_modality = str(raw["field"]), str(raw.get("modality", ""))
        return out
    if way in ("mask", "json"):
        sub = raw[way]
        if isinstance(sub, str):
            sub = {"root": ".", "pattern": sub}
        out_mod = _modality(w, f"labels.{way}", {**sub, "kind": "image"}, base, label=True)
        if way == "mask":
            out.mask = out_mod
            if not classes:
                raise w.err("labels.classes", "segmentation needs the class list (index = "
                                              "mask value)")
        else:
            out.json = out_mod
            out.json_key = str(raw.get("key", "labels"))
        return out
    if not raw.get("file"):
        raise w.err("labels.file", "missing: the CSV or Parquet label table")
    out.file = _resolve(str(raw["file"]), base)
    if way == "class_column":
        out.class_column = str(raw[way])
    elif way == "labels_column":
        out.labels_column = str(raw[way])
        out.separator = str(raw.get("separator", ";"))
    elif way == "class_columns":
        out.class_columns = _strs(w, "labels.class_columns", raw[way])
    else:
        out.target_columns = _strs(w, "labels.target_columns", raw[way])
    return out


def _splits(w: _Where, raw: Any, base: Path | str) -> SplitsConfig:
    if raw is None:
        return SplitsConfig()
    if not isinstance(raw, dict):
        raise w.err("splits", f"expected a mapping (column, files or random), got {raw!r}")
    _known(w, "splits", raw, {"column", "files", "random", "train", "val", "test"})
    if any(k in raw for k in SPLITS):  # splits: {train: a.txt, val: b.txt, test: c.txt}
        raw = {"files": {k: raw[k] for k in SPLITS if k in raw}}
    given = [k for k in ("column", "files", "random") if k in raw]
    if len(given) != 1:
        raise w.err("splits", "give exactly one of column, files or random")
    mode = given[0]
    if mode == "column":
        return SplitsConfig(mode="column", column=str(raw["column"]))
    if mode == "files":
        files = raw["files"]
        if not isinstance(files, dict) or not files or set(files) - set(SPLITS):
            raise w.err("splits.files", "map train / val / test to files of sample ids")
        return SplitsConfig(mode="files", files={k: _resolve(str(v), base)
                                                 for k, v in files.items()})
    r = raw["random"] or {}
    if not isinstance(r, dict):
        raise w.err("splits.random", f"expected a mapping (seed, fractions, by), got {r!r}")
    _known(w, "splits.random", r, {"seed", "fractions", "by"})
    from rsray.data.splits import check_fractions

    try:
        fractions = check_fractions(r.get("fractions", (0.7, 0.15, 0.15)))
    except ConfigError as exc:
        raise w.err("splits.random.fractions", str(exc)) from None
    seed = r.get("seed", 0)
    if not isinstance(seed, int):
        raise w.err("splits.random.seed", f"expected an integer, got {seed!r}")
    return SplitsConfig(mode="random", seed=seed, fractions=fractions, by=str(r.get("by", "")))


def _groups(w: _Where, raw: Any, cfg_mods: list[ModalityConfig]) -> list[GroupConfig]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise w.err("groups", f"expected a mapping of group name -> column or field, got {raw!r}")
    out = []
    for name, spec in raw.items():
        key = f"groups.{name}"
        if not re.match(r"^[A-Za-z][A-Za-z0-9]*$", str(name)):
            raise w.err(key, "group names are letters and digits (scene, tile, region)")
        if isinstance(spec, str):
            spec = {"column": spec}
        if not isinstance(spec, dict):
            raise w.err(key, f"expected {{column: ..}} or {{field: .., modality: ..}}, got "
                             f"{spec!r}")
        _known(w, key, spec, {"column", "field", "modality"})
        if ("column" in spec) == ("field" in spec):
            raise w.err(key, "give column (of the label table) or field (of a modality's "
                             "pattern)")
        g = GroupConfig(name=str(name), column=str(spec.get("column", "")),
                        field=str(spec.get("field", "")), modality=str(spec.get("modality", "")))
        if g.field:
            having = [m.name for m in cfg_mods if m.regex is not None
                      and g.field in m.regex.groupindex]
            if g.modality and g.modality not in having:
                raise w.err(f"{key}.modality", f"{g.modality!r} has no field {g.field!r} in "
                                               "its pattern")
            if not having:
                raise w.err(f"{key}.field", f"no modality's pattern has a field {g.field!r}")
            g.modality = g.modality or having[0]
        out.append(g)
    return out


_TOP_KEYS = {"name", "modalities", "labels", "splits", "groups", "allow_missing_modalities",
             "tolerance", "means", "stds"}


def config_from_dict(raw: Any, source: str, base: Path | str) -> FilesConfig:
    """Validate a parsed YAML mapping; relative paths are taken from ``base``."""
    w = _Where(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    if isinstance(raw.get("modalities"), list):
        from rsray.data.sources.files.terratorch import from_terratorch

        raw = from_terratorch(raw, source)
    _known(w, "", raw, _TOP_KEYS)
    name = str(raw.get("name") or Path(source).stem)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise w.err("name", f"{name!r} must be letters, digits, '_', '-', '.'")
    mods_raw = raw.get("modalities")
    if not isinstance(mods_raw, dict) or not mods_raw:
        raise w.err("modalities", "missing: map each modality name to its files")
    mods = [_modality(w, str(k), v, base) for k, v in mods_raw.items()]
    if not any(m.kind != "table" for m in mods):
        raise w.err("modalities", "at least one modality must be rasters (kind image or "
                                  "series)")
    if "labels" not in raw:
        raise w.err("labels", "missing: a label table, mask rasters or label files")
    labels = _labels(w, raw["labels"], base)
    if labels.field:
        having = [m.name for m in mods if m.regex is not None
                  and labels.field in m.regex.groupindex]
        if not having or (labels.field_modality and labels.field_modality not in having):
            raise w.err("labels.field", f"no modality's pattern has a field {labels.field!r}"
                        + (f" (modality {labels.field_modality})" if labels.field_modality
                           else ""))
        labels.field_modality = labels.field_modality or having[0]
    splits = _splits(w, raw.get("splits"), base)
    groups = _groups(w, raw.get("groups"), mods)
    if splits.mode == "column" and not labels.file:
        raise w.err("splits.column", "needs a label table (labels.file)")
    if splits.by and splits.by not in [g.name for g in groups]:
        raise w.err("splits.random.by", f"{splits.by!r} is not a group (groups: "
                                        f"{', '.join(g.name for g in groups) or 'none'})")
    if any(g.column for g in groups) and not labels.file:
        raise w.err("groups", "a group from a column needs a label table (labels.file)")
    per_root = {r.split for m in mods for r in m.roots if r.split}
    if per_root:
        if splits.mode not in ("random", "files") or (splits.mode == "random" and "splits"
                                                       in raw):
            raise w.err("splits", "per-split roots already give the splits; use them alone or "
                                  "with split files")
        if splits.mode == "random":
            splits = SplitsConfig(mode="roots")
    tol = raw.get("tolerance")
    stats: dict[str, dict[str, list[float]]] = {}
    for key in ("means", "stds"):
        given = raw.get(key) or {}
        if not isinstance(given, dict):
            raise w.err(key, "expected a mapping modality -> one value per band")
        for mod, values in given.items():
            m = next((x for x in mods if x.name == mod), None)
            if m is None:
                raise w.err(f"{key}.{mod}", "not a modality of this dataset")
            if not isinstance(values, list) or (m.bands and len(values) != len(m.bands)):
                raise w.err(f"{key}.{mod}", f"expected {len(m.bands) or 'one'} number(s) per "
                                            "band, in band order")
            stats.setdefault(key, {})[mod] = [_float(w, f"{key}.{mod}", v) for v in values]
        if key == "stds" and any(v <= 0 for vs in stats.get(key, {}).values() for v in vs):
            raise w.err(key, "standard deviations must be > 0")
    return FilesConfig(
        name=name, modalities=mods, labels=labels, splits=splits, groups=groups,
        allow_missing_modalities=bool(raw.get("allow_missing_modalities", False)),
        tolerance=None if tol is None else _float(w, "tolerance", tol),
        means=stats.get("means", {}), stds=stats.get("stds", {}), source=source,
    )


def load_files_config(path: str | Path, options: StorageOptions = None) -> FilesConfig:
    """Read and validate a dataset YAML file (ConfigError naming the file and key).

    ``path`` may be a URL (``s3://bucket/data/dataset.yaml``); relative paths in it are then
    taken from the URL's folder. ``options``: fsspec options for such a URL.
    """
    if is_remote_url(str(path)):
        url = str(path)
        try:
            text = read_bytes(url, options).decode()
        except FileNotFoundError:
            raise ConfigError(f"{url}: dataset description not found") from None
        source, base = url, url.rstrip("/").rsplit("/", 1)[0]
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: dataset description not found")
        text, source, base = p.read_text(), str(p), str(p.resolve().parent)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{source}: not valid YAML{at}") from None
    return config_from_dict(raw, source, base)


__all__ = ["KINDS", "SPLITS", "FilesConfig", "GroupConfig", "LabelsConfig", "ModalityConfig",
           "RootSpec", "SplitsConfig", "config_from_dict", "grep_to_regex", "load_files_config",
           "template_to_regex"]
