"""Labels of a described dataset: from a table, a JSON file per sample or a mask per sample.

Tables hold one class column, a class list per row, one column per class or numeric targets.

:func:`load_labels` turns the YAML's ``labels`` section into ``{sample id: label}`` (a JSON-able
label vector, or the mask's URL for segmentation), the class list and the rejected rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rsray.data.schema import Reject
from rsray.data.sources.files.config import FilesConfig
from rsray.data.sources.files.listing import (
    Listing,
    first_url,
    json_labels,
    list_modality,
    table_rows,
)
from rsray.storage import StorageOptions

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", ""}


@dataclass
class Labels:
    """Labels by sample id, and what came with the label table."""

    task: str
    classes: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    """``id -> label``: a list (multi-hot / one-hot / targets) or, for segmentation, a URL."""
    where: dict[str, str] = field(default_factory=dict)
    """``id -> file`` the label came from (for messages)."""
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    """``id -> {column: value}``: the split and group columns of the table."""
    rejects: list[Reject] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)
    """Ids whose label was rejected (their files are not reported again)."""
    source: str = ""


def load_labels(cfg: FilesConfig, options: StorageOptions = None, threads: int = 16,
                listings: Mapping[str, Listing] | None = None) -> Labels:
    """Read the labels of ``cfg`` (tables whole; per-sample JSON files in ``threads``).

    ``listings`` (modality -> :class:`Listing`) gives the path fields for ``labels.field``.
    """
    lc = cfg.labels
    if lc.field:
        listing = (listings or {})[lc.field_modality]
        found = {sid: f[lc.field] for sid, f in listing.fields.items() if lc.field in f}
        out = Labels(task=lc.task, classes=lc.classes or tuple(sorted(set(found.values()))),
                     source=f"the {{{lc.field}}} field of modality {lc.field_modality}'s paths")
        for sid, name in sorted(found.items()):
            where = first_url(listing.files[sid])
            if name not in out.classes:
                _reject(out, where, f"label {name!r} is not one of the classes "
                                    f"({_short(out.classes)})", sid)
                continue
            out.values[sid] = [int(c == name) for c in out.classes]
            out.where[sid] = where
        return out
    extra_cols = [g.column for g in cfg.groups if g.column]
    if cfg.splits.mode == "column":
        extra_cols.append(cfg.splits.column)
    extra_cols = list(dict.fromkeys(extra_cols))
    if lc.mask is not None or lc.json is not None:
        sub = lc.mask if lc.mask is not None else lc.json
        assert sub is not None
        listing = list_modality(sub)
        out = Labels(task=lc.task, classes=lc.classes, rejects=list(listing.rejects),
                     source=", ".join(r.path for r in sub.roots))
        urls = {sid: e["file"] for sid, e in listing.files.items()}
        if lc.mask is not None:
            out.values, out.where = dict(urls), dict(urls)
            return out
        ids = sorted(urls)

        def one(sid: str) -> tuple[str, list[str] | str]:
            try:
                return sid, json_labels(urls[sid], lc.json_key, options)
            except Exception as exc:  # one bad file never stops the set
                return sid, f"unreadable label file ({type(exc).__name__}: {exc})"

        with ThreadPoolExecutor(max_workers=threads) as pool:
            names = dict(pool.map(one, ids))
        out.classes = lc.classes or tuple(sorted({c for v in names.values()
                                                  if isinstance(v, list) for c in v}))
        for sid in ids:
            value = names[sid]
            if isinstance(value, str):
                _reject(out, urls[sid], value, sid)
                continue
            _multi_hot(out, sid, value, urls[sid])
        return out

    label_cols = ([lc.class_column] if lc.class_column else [lc.labels_column]
                  if lc.labels_column else list(lc.class_columns or lc.target_columns))
    rows, rejects = table_rows(lc.file, lc.id_column, list(dict.fromkeys(label_cols
                                                                         + extra_cols)),
                               "label table", options)
    out = Labels(task=lc.task, classes=lc.classes, rejects=rejects, source=lc.file,
                 bad={r["path"].split("=", 1)[1] for r in rejects})
    out.extra = {sid: {c: str(r[c]) for c in extra_cols} for sid, r in rows.items()}
    if lc.class_column:
        found = sorted({str(r[lc.class_column]).strip() for r in rows.values()} - {""})
        out.classes = lc.classes or tuple(found)
    elif lc.labels_column:
        found = sorted({c.strip() for r in rows.values()
                        for c in str(r[lc.labels_column]).split(lc.separator)} - {""})
        out.classes = lc.classes or tuple(found)
    elif lc.class_columns:
        out.classes = lc.class_columns
    else:
        out.classes = lc.target_columns
    for sid, r in rows.items():
        where = f"{lc.file}#{lc.id_column}={sid}"
        out.where[sid] = where
        if lc.class_column:
            name = str(r[lc.class_column]).strip()
            if name not in out.classes:
                _reject(out, where, f"label {name!r} is not one of the classes "
                                    f"({_short(out.classes)})" if name else "empty label", sid)
                continue
            vec = [0] * len(out.classes)
            vec[out.classes.index(name)] = 1
            out.values[sid] = vec
        elif lc.labels_column:
            names = [c.strip() for c in str(r[lc.labels_column]).split(lc.separator)]
            _multi_hot(out, sid, [c for c in names if c], where)
        elif lc.class_columns:
            vec = []
            for c in lc.class_columns:
                text = str(r[c]).strip().lower()
                if text not in _TRUE | _FALSE:
                    _reject(out, where, f"column {c!r} holds {r[c]!r}, expected 0/1", sid)
                    break
                vec.append(int(text in _TRUE))
            else:
                out.values[sid] = vec
        else:
            targets = []
            for c in lc.target_columns:
                try:
                    v = float(r[c])
                except (TypeError, ValueError):
                    v = math.nan
                if not math.isfinite(v):
                    _reject(out, where, f"target {c!r} is {r[c]!r}, not a finite number", sid)
                    break
                targets.append(v)
            else:
                out.values[sid] = targets
    return out


def _short(classes: tuple[str, ...], n: int = 8) -> str:
    more = f", ... {len(classes) - n} more" if len(classes) > n else ""
    return ", ".join(classes[:n]) + more


def _reject(out: Labels, where: str, reason: str, sid: str) -> None:
    out.rejects.append({"path": where, "reason": reason})
    out.bad.add(sid)


def _multi_hot(out: Labels, sid: str, names: list[str], where: str) -> None:
    unknown = [c for c in names if c not in out.classes]
    if unknown:
        _reject(out, where, f"label {unknown[0]!r} is not one of the classes "
                            f"({_short(out.classes)})", sid)
        return
    vec = [0] * len(out.classes)
    for c in names:
        vec[out.classes.index(c)] = 1
    out.values[sid] = vec
    out.where[sid] = where


__all__ = ["Labels", "load_labels"]
