"""Finding a described dataset's files and tables: listings matched against the path patterns.

One recursive listing per root (``fsspec`` ``find``: a local walk or paged S3 listings), each
relative path matched against the modality's pattern; no raster is opened here. Tables (labels,
vector modalities) are read whole with pandas (CSV or Parquet, local or ``s3://``).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rsray.data.schema import Reject
from rsray.data.sources.files.config import ModalityConfig
from rsray.errors import ConfigError, DatasetNotFoundError
from rsray.storage import StorageOptions, get_fs, join_url, to_uri


@dataclass
class Listing:
    """What one modality's roots hold, by sample id."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``id -> entry``: image ``{"file": url}`` or ``{"bands": {band: url}}``; series
    ``{"dates": {date: {"file": ..} | {"bands": ..}}}``."""
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    """``id -> {field: value}``: the pattern's other named groups (tile, region, ...)."""
    split: dict[str, str] = field(default_factory=dict)
    """``id -> split`` for per-split roots."""
    rejects: list[Reject] = field(default_factory=list)
    matched: int = 0


def list_modality(m: ModalityConfig, options: StorageOptions = None) -> Listing:
    """Match every file under the modality's roots; duplicates are rejected by path."""
    out = Listing()
    assert m.regex is not None
    for root in m.roots:
        fs, base = get_fs(root.path, options)
        try:
            if not fs.isdir(base):
                raise DatasetNotFoundError(f"{root.path}: folder of modality {m.name} not found")
            paths = fs.find(base)
        except (FileNotFoundError, NotADirectoryError):
            raise DatasetNotFoundError(f"{root.path}: folder of modality {m.name} not "
                                       "found") from None
        prefix = base.rstrip("/") + "/"
        for path in sorted(paths):
            rel = path[len(prefix):] if path.startswith(prefix) else path
            hit = m.regex.fullmatch(rel)
            if hit is None:
                continue
            out.matched += 1
            url = to_uri(fs, path)
            gd = hit.groupdict()
            sid = gd["id"]
            entry = out.files.setdefault(sid, {})
            if m.kind == "series":
                entry = entry.setdefault("dates", {}).setdefault(gd["date"], {})
            if m.file_per_band:
                band = gd["band"]
                if m.bands and band not in m.bands:
                    continue  # a band the description does not use
                slot, key = entry.setdefault("bands", {}), band
            else:
                slot, key = entry, "file"
            if key in slot:
                out.rejects.append({"path": url, "reason": f"a second {m.name} file for sample "
                                    f"{sid}" + (f" band {key}" if m.file_per_band else "")
                                    + f" (the first is {slot[key]})"})
                continue
            slot[key] = url
            extra = {k: v for k, v in gd.items() if k not in ("id", "band", "date")
                     and v is not None}
            if extra:
                out.fields.setdefault(sid, {}).update(extra)
            if root.split:
                out.split[sid] = root.split
    return out


def remap_ids(m: ModalityConfig, listing: Listing, threads: int = 16,
              options: StorageOptions = None) -> list[Reject]:
    """Re-key ``listing`` by the id each sample's JSON file names (``id_json``)."""
    assert m.id_json is not None
    template, key = m.id_json
    root = m.roots[0].path

    def one(sid: str) -> tuple[str, str | None, str]:
        url = join_url(root, *template.replace("{id}", sid).split("/"))
        try:
            fs, path = get_fs(url, options)
            with fs.open(path, "rb") as f:
                value = json.load(f).get(key)
        except Exception as exc:  # one bad file never stops the set
            return sid, None, f"{url}: {type(exc).__name__}: {exc}"
        return sid, (str(value) if value else None), url

    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = list(pool.map(one, sorted(listing.files)))
    rejects: list[Reject] = []
    files, fields, split = {}, {}, {}
    for sid, new, where in found:
        if new is None:
            rejects.append({"path": first_url(listing.files[sid]), "reason":
                            f"{m.name}: no {key!r} in its id file ({where})"})
            continue
        files[new] = listing.files[sid]
        if sid in listing.fields:
            fields[new] = {**listing.fields[sid], "native_id": sid}
        if sid in listing.split:
            split[new] = listing.split[sid]
    listing.files, listing.fields, listing.split = files, fields, split
    return rejects


def missing_bands(m: ModalityConfig, entry: dict[str, Any]) -> list[str]:
    """Bands of ``m`` without a file in one entry (every date of a series)."""
    if not m.file_per_band:
        return []
    slots = entry["dates"].values() if m.kind == "series" else [entry]
    return [b for b in m.bands if any(b not in s.get("bands", {}) for s in slots)]


def first_url(entry: dict[str, Any]) -> str:
    """One file of an entry (for messages)."""
    if "dates" in entry:
        entry = entry["dates"][sorted(entry["dates"])[0]]
    if "file" in entry:
        return str(entry["file"])
    return str(next(iter(entry["bands"].values())))


def all_urls(entry: dict[str, Any]) -> list[str]:
    """Every file of an entry."""
    slots = [entry["dates"][d] for d in sorted(entry["dates"])] if "dates" in entry else [entry]
    out: list[str] = []
    for s in slots:
        out += [s["file"]] if "file" in s else list(s["bands"].values())
    return out


_DIGITS = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def day_of_year(text: str, fmt: str = "") -> int:
    """Day of year (1-366) of a ``{date}`` field: ``fmt`` (strptime) or the first YYYYMMDD."""
    if fmt:
        return datetime.strptime(text, fmt).timetuple().tm_yday
    hit = _DIGITS.search(text)
    if hit is None:
        raise ValueError(f"no YYYYMMDD or YYYY-MM-DD date in {text!r} (set date_format)")
    return datetime(int(hit[1]), int(hit[2]), int(hit[3])).timetuple().tm_yday


def read_table(url: str, what: str, options: StorageOptions = None) -> Any:
    """A CSV or Parquet table as a pandas DataFrame of strings (``.parquet``/``.pq`` by name)."""
    import pandas as pd

    fs, path = get_fs(url, options)
    if not fs.exists(path):
        raise DatasetNotFoundError(f"{url}: {what} not found")
    try:
        with fs.open(path, "rb") as f:
            if path.endswith((".parquet", ".pq")):
                df = pd.read_parquet(f)
            else:
                df = pd.read_csv(f, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ConfigError(f"{url}: {what} is not a readable CSV/Parquet table "
                          f"({type(exc).__name__}: {exc})") from None
    return df


def table_rows(url: str, id_column: str, columns: list[str], what: str,
               options: StorageOptions = None) -> tuple[dict[str, dict[str, Any]], list[Reject]]:
    """``{id: {column: value}}`` of a table; duplicate ids rejected, missing columns an error."""
    df = read_table(url, what, options)
    absent = [c for c in [id_column, *columns] if c not in df.columns]
    if absent:
        raise ConfigError(f"{url}: {what} has no column {absent[0]!r} (columns: "
                          f"{', '.join(map(str, df.columns))})")
    rows: dict[str, dict[str, Any]] = {}
    rejects: list[Reject] = []
    ids = df[id_column].astype(str).tolist()
    values = {c: df[c].tolist() for c in columns}
    for i, sid in enumerate(ids):
        if sid in rows:
            rejects.append({"path": f"{url}#{id_column}={sid}",
                            "reason": f"{what}: id {sid} appears twice (row {i + 2})"})
            rows[sid] = {"__duplicate__": True}
            continue
        rows[sid] = {c: values[c][i] for c in columns}
    return {k: v for k, v in rows.items() if "__duplicate__" not in v}, rejects


def read_id_list(url: str, options: StorageOptions = None) -> list[str]:
    """Sample ids of a split file: one per line (a first CSV column, file names are stemmed)."""
    fs, path = get_fs(url, options)
    if not fs.exists(path):
        raise DatasetNotFoundError(f"{url}: split file not found")
    with fs.open(path, "rt") as f:
        out = []
        for line in f:
            text = line.strip().split(",")[0].strip()
            if text:
                out.append(text.rsplit("/", 1)[-1].split(".")[0] if "/" in text else text)
    return out


def json_labels(url: str, key: str, options: StorageOptions = None) -> list[str]:
    """The list of class names under ``key`` in one JSON label file."""
    fs, path = get_fs(url, options)
    with fs.open(path, "rb") as f:
        doc = json.load(f)
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"key {key!r} is not a list of class names")
    return value


__all__ = ["Listing", "all_urls", "day_of_year", "first_url", "json_labels", "list_modality",
           "missing_bands", "read_id_list", "read_table", "remap_ids", "table_rows"]
