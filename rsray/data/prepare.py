"""``rsray prepare``: raw dataset -> Parquet shards + manifest, in parallel with Ray Data.

1. The source's ``discover()`` runs on the driver: list folders, pair modalities, assign splits
   (cheap: folder listings and small json files).
2. Items are grouped per split into chunks of about ``target_shard_mb`` and handed to Ray Data;
   one task per chunk reads and validates every sample with rasterio, writes one shard
   atomically (Parquet with the set's ``codec``; image groups as ``fixed_size_binary`` so a
   batch decodes as a view, see :mod:`rsray.data.schema`), and returns its size, sha256,
   rejects and per-band statistics (and counts of the optional boolean ``flags`` a reader
   puts in a sample, e.g. FLAIR-2's ``all_cloudy``; the manifest's ``info.flags`` holds them
   per split).
3. The driver merges statistics of the training split (Chan's parallel mean/variance) and
   writes ``manifest.json`` last: without it, readers refuse the folder.

:func:`prepare_from_args` (``rsray prepare <dataset>``) and :func:`synthetic_shards` (a
dataset's synthetic twin, written and prepared) reach the dataset through its registry entry.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rsray.console import Progress
from rsray.data.registry import get_dataset, require_twin
from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    Discovery,
    Reject,
    Source,
    encode_array,
    encode_column,
    group_arrow_type,
    group_nbytes,
)
from rsray.data.shards import (
    CODECS,
    DEFAULT_CODEC,
    MANIFEST_NAME,
    Manifest,
    ShardInfo,
    read_manifest,
    resolve_codec,
    sha256_bytes,
    write_manifest,
)
from rsray.data.splits import OOD_SPLIT, apply_holdout, parse_holdout
from rsray.errors import PatchError, RsrayError
from rsray.storage import atomic_write_bytes, get_fs, join

DEFAULT_SHARD_MB = 128
ROW_GROUP_MB = 8
"""Target Parquet row-group size: the unit a reader decodes at once. Measured single-process
read + view on BigEarthNet-MM (docs/performance.md, ingest): 32-row (~9 MB) groups read fastest;
16 rows pay per-group overhead, 112-490 rows (31-134 MB) allocate large cold buffers per group
and read 2-10x slower."""
ROW_GROUP_ROWS_MIN, ROW_GROUP_ROWS_MAX = 16, 1024
TARGET_MOMENTS = "__targets__"
"""Key of the regression targets' moments beside the band groups' (no group has this name)."""


@dataclass
class BandMoments:
    """Count, mean and sum of squared deviations of one band (mergeable)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add_array(self, x: np.ndarray) -> None:
        """Fold in all values of ``x``."""
        x = x.astype(np.float64, copy=False).ravel()
        if x.size == 0:
            return
        self.merge(BandMoments(int(x.size), float(x.mean()), float(((x - x.mean()) ** 2).sum())))

    def merge(self, other: BandMoments) -> None:
        """Chan et al.'s parallel update."""
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return math.sqrt(self.m2 / self.n) if self.n else float("nan")


@dataclass
class PrepareResult:
    """What ``prepare`` wrote."""

    uri: str
    manifest: Manifest
    seconds: float
    rejects: list[Reject] = field(default_factory=list)


def row_group_rows(spec: DatasetSpec, target_mb: float = ROW_GROUP_MB) -> int:
    """Rows per Parquet row group: about ``target_mb`` of arrays, rounded to 16 rows."""
    rows = round(target_mb * 2**20 / max(_row_bytes(spec), 1) / 16) * 16
    return min(max(rows, ROW_GROUP_ROWS_MIN), ROW_GROUP_ROWS_MAX)


def _arrow_schema(spec: DatasetSpec, meta_keys: list[str]) -> pa.Schema:
    cols = [pa.field("patch_id", pa.string()), pa.field("split", pa.string())]
    if spec.task == "segmentation":
        cols += [pa.field("label", pa.binary(spec.label_size ** 2)),
                 pa.field("label_shape", pa.list_(pa.int32(), 2))]
    elif spec.task == "regression":
        cols.append(pa.field("label", pa.list_(pa.float32(), len(spec.classes))))
    else:
        cols.append(pa.field("label", pa.list_(pa.uint8(), len(spec.classes))))
    for g in spec.groups:
        cols.append(pa.field(g.name, group_arrow_type(g)))
        cols.append(pa.field(f"{g.name}_shape", pa.list_(pa.int32(), len(g.shape))))
        if g.kind == "series":
            cols.append(pa.field(f"{g.name}_dates", pa.list_(pa.int32())))
    cols += [pa.field(f"meta_{k}", pa.string()) for k in meta_keys]
    cols += [pa.field(f"present_{m}", pa.uint8()) for m in spec.optional_modalities]
    return pa.schema(cols)


def _add_label(rows: dict[str, list[Any]], spec: DatasetSpec, sample: dict[str, Any]) -> None:
    label = np.asarray(sample["label"])
    if spec.task == "segmentation":
        want = (spec.label_size, spec.label_size)
        if label.shape != want:
            raise PatchError(sample["patch_id"], f"label mask of shape {label.shape}, "
                             f"expected {want}")
        if label.size and int(label.max()) >= len(spec.classes):
            raise PatchError(sample["patch_id"], f"label mask has class index {int(label.max())}"
                             f" but the dataset has {len(spec.classes)} classes")
        rows["label"].append(label.astype(np.uint8))
        rows["label_shape"].append(list(label.shape))
    else:
        if label.shape != (len(spec.classes),):
            raise PatchError(sample["patch_id"], f"label of shape {label.shape}, expected "
                             f"({len(spec.classes)},)")
        if spec.task == "regression":
            target = label.astype(np.float32)
            bad = [n for n, v in zip(spec.classes, target.tolist(), strict=True)
                   if not math.isfinite(v)]
            if bad:
                raise PatchError(sample["patch_id"], f"target {', '.join(bad)} is not a finite "
                                 f"float32 ({label.tolist()})")
            rows["label"].append(target.tolist())
            return
        rows["label"].append(label.astype(np.uint8).tolist())


def _fold_moments(moments: list[BandMoments], group: BandGroup, arr: np.ndarray) -> None:
    """Per-band statistics of one array (bands on axis 0, or axis 1 for a series)."""
    if group.kind == "vector":
        for b in range(arr.shape[0]):
            moments[b].add_array(arr[b:b + 1])
        return
    axis = 1 if group.kind == "series" else 0
    for b in range(arr.shape[axis]):
        moments[b].add_array(np.take(arr, b, axis=axis))


def _to_table(rows: dict[str, list[Any]], spec: DatasetSpec, schema: pa.Schema) -> pa.Table:
    """Collected rows -> one table; fixed-size columns are built from one contiguous buffer."""
    cols: dict[str, Any] = dict(rows)
    if spec.task == "segmentation":
        cols["label"] = encode_column(rows["label"], "uint8", spec.label_size ** 2)
    for g in spec.groups:
        if g.kind != "series":
            cols[g.name] = encode_column(rows[g.name], g.dtype, group_nbytes(g))
    return pa.table(cols, schema=schema)


def write_shard_bytes(table: pa.Table, codec: str, rows_per_group: int) -> bytes:
    """Parquet bytes of ``table``: ``codec``, no dictionary or statistics on array columns.

    Dictionary encoding is only tried on the small string columns (on the band columns it
    always falls back to PLAIN after a wasted attempt) and min/max statistics are kept off the
    band columns (they are never used to skip rows).
    """
    if codec not in CODECS:
        raise RsrayError(f"codec {codec!r}: choose one of {', '.join(CODECS)}")
    small = [f.name for f in table.schema if pa.types.is_string(f.type)]
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=codec, row_group_size=rows_per_group,
                   use_dictionary=small, write_statistics=small)
    return buf.getvalue()


def _write_chunk(
    source: Source, out_uri: str, chunk: dict[str, Any], meta_keys: list[str],
    codec: str = "none", rows_per_group: int = 128,
) -> dict[str, Any]:
    """Read, validate and write one shard. Runs inside a Ray Data task."""
    spec = source.spec
    rows: dict[str, list[Any]] = {f.name: [] for f in _arrow_schema(spec, meta_keys)}
    rejects: list[Reject] = []
    moments = {g.name: [BandMoments() for _ in g.bands] for g in spec.groups}
    if spec.task == "regression":  # training statistics of the targets (standardisation)
        moments[TARGET_MOMENTS] = [BandMoments() for _ in spec.classes]
    flags: Counter[str] = Counter()  # a sample's optional "flags" {name: bool}, counted
    for item in chunk["items"]:
        try:
            sample = source.read(item)
        except PatchError as exc:
            rejects.append({"path": exc.path, "reason": exc.reason})
            continue
        except Exception as exc:  # a reader bug must not lose the whole shard: report it
            rejects.append({"path": str(item.get("patch_id")),
                            "reason": f"unexpected {type(exc).__name__}: {exc}"})
            continue
        for g in spec.groups:
            problem = g.check_shape(np.asarray(sample["arrays"][g.name]))
            if problem:
                raise RsrayError(f"{sample['patch_id']}: reader returned {g.name} with "
                                 f"{problem} (a reader bug: readers must validate shapes)")
        try:
            _add_label(rows, spec, sample)
        except PatchError as exc:
            rejects.append({"path": exc.path, "reason": exc.reason})
            continue
        rows["patch_id"].append(sample["patch_id"])
        rows["split"].append(chunk["split"])
        if spec.task == "regression" and chunk["split"] == "train":
            for m, v in zip(moments[TARGET_MOMENTS], rows["label"][-1], strict=True):
                m.add_array(np.asarray([v]))
        present = sample.get("present") or {}
        absent = {g.name for m in spec.modalities if m.name in spec.optional_modalities
                  and not present.get(m.name, True) for g in m.groups}
        for m in spec.optional_modalities:
            rows[f"present_{m}"].append(int(bool(present.get(m, True))))
        for g in spec.groups:
            arr = np.asarray(sample["arrays"][g.name])
            rows[g.name].append(encode_array(arr, g.dtype) if g.kind == "series" else arr)
            rows[f"{g.name}_shape"].append(list(arr.shape))
            if g.kind == "series":
                dates = np.asarray(sample["arrays"][f"{g.name}_dates"], dtype=np.int64)
                if dates.shape != (arr.shape[0],):
                    raise RsrayError(f"{sample['patch_id']}: {g.name}_dates has shape "
                                     f"{dates.shape} for {arr.shape[0]} dates")
                rows[f"{g.name}_dates"].append(dates.astype(np.int32).tolist())
            if chunk["split"] == "train" and g.name not in absent:  # zeros are not data
                _fold_moments(moments[g.name], g, arr)
        for k in meta_keys:
            rows[f"meta_{k}"].append(str(sample["meta"].get(k, "")))
        flags.update(k for k, v in (sample.get("flags") or {}).items() if v)
    result: dict[str, Any] = {"shard": "", "rejects": json.dumps(rejects),
                              "flags": json.dumps({"split": chunk["split"], "counts": flags})}
    result["moments"] = json.dumps(
        {g: [[m.n, m.mean, m.m2] for m in ms] for g, ms in moments.items()}
    )
    if not rows["patch_id"]:
        return result
    table = _to_table(rows, spec, _arrow_schema(spec, meta_keys))
    data = write_shard_bytes(table, codec, rows_per_group)
    rel = f"{chunk['split']}/shard-{chunk['index']:05d}.parquet"
    fs, root = get_fs(out_uri)
    atomic_write_bytes(fs, join(root, rel), data)
    result["shard"] = json.dumps(
        {"path": rel, "split": chunk["split"], "rows": table.num_rows, "bytes": len(data),
         "sha256": sha256_bytes(data)}
    )
    return result


def _row_bytes(spec: DatasetSpec) -> int:
    """Upper bound of one row's array bytes (series counted at ``max_len`` dates)."""
    label = (spec.label_size**2 if spec.task == "segmentation"
             else len(spec.classes) * (4 if spec.task == "regression" else 1))
    return label + sum(int(np.prod(g.shape)) * np.dtype(g.dtype).itemsize for g in spec.groups)


def _chunks(discovery: Discovery, rows_per_shard: int) -> list[dict[str, Any]]:
    by_split: dict[str, list[dict[str, Any]]] = {}
    for item in sorted(discovery.items, key=lambda it: it["patch_id"]):
        by_split.setdefault(item["split"], []).append(item)
    chunks = []
    for split, items in sorted(by_split.items()):
        for i in range(0, len(items), rows_per_shard):
            chunks.append({"split": split, "index": i // rows_per_shard,
                           "items": items[i:i + rows_per_shard]})
    return chunks


def _clear_output(out_uri: str, overwrite: bool) -> None:
    fs, root = get_fs(out_uri)
    manifest = join(root, MANIFEST_NAME)
    if fs.exists(manifest):
        if not overwrite:
            existing = read_manifest(out_uri)
            raise RsrayError(
                f"{out_uri}: already holds a complete shard set ({sum(existing.splits.values())} "
                "rows). Pass --overwrite to replace it, or choose another --out."
            )
        fs.rm(manifest)  # first, so a crash below leaves an (honestly) incomplete set
    # shards, and the temporary files of shard writes a killed prepare never finished
    stale = [p for p in (fs.find(root) if fs.exists(root) else [])
             if p.endswith(".parquet") or ".parquet.tmp-" in p.rsplit("/", 1)[-1]]
    if stale:
        print(f"removing {len(stale)} shard(s) left by an earlier, unfinished prepare", flush=True)
        fs.rm(stale)


def summarise_rejects(rejects: list[Reject], limit: int = 15) -> str:
    """A short on-screen summary: counts by kind of problem, then the first few in full."""
    if not rejects:
        return "rejected: none"
    kinds = Counter(r["reason"].split(":")[0].split(" (")[0][:60] for r in rejects)
    lines = [f"rejected: {len(rejects)} patch(es)"]
    lines += [f"  {n:6d} x {kind}" for kind, n in kinds.most_common(10)]
    lines += [f"  - {r['path']}: {r['reason']}" for r in rejects[:limit]]
    if len(rejects) > limit:
        lines.append(f"  ... {len(rejects) - limit} more; all are listed in {MANIFEST_NAME}")
    return "\n".join(lines)


def _given_stats(stats: dict[str, dict[str, float]], modality: str, bands: tuple[str, ...],
                 given: dict[str, dict[str, list[float]]] | None) -> None:
    """Replace computed band means/stds by those a source was given (``means``/``stds``)."""
    for key, field_name in (("means", "mean"), ("stds", "std")):
        values = ((given or {}).get(key) or {}).get(modality)
        if values is None:
            continue
        if len(values) != len(bands):
            raise RsrayError(f"{key}.{modality}: {len(values)} values for {len(bands)} bands "
                             f"({', '.join(bands)})")
        for band, v in zip(bands, values, strict=True):
            stats[band][field_name] = float(v)
            stats[band]["given"] = 1.0


def prepare(
    source: Source,
    out_uri: str,
    *,
    target_shard_mb: float = DEFAULT_SHARD_MB,
    overwrite: bool = False,
    concurrency: int | None = None,
    holdout: list[str] | None = None,
    codec: str = DEFAULT_CODEC,
) -> PrepareResult:
    """Convert ``source`` to a shard set at ``out_uri`` (local path or ``s3://``).

    ``codec`` (``none``, ``lz4``, ``zstd``; ``auto``: ``none`` on local disk, ``zstd`` on
    ``s3://``) compresses every shard of the set; the manifest's ``storage`` entry records it
    with the layout and the row-group size.

    ``holdout`` rules (``country=Serbia,Portugal``, ``lat=40:50``, see
    :func:`rsray.data.splits.parse_holdout`) move every matching sample into the ``ood``
    split: it is then neither trained on nor in the in-distribution val/test splits.
    """
    import ray

    from rsray.runtime import ensure_ray

    t0 = time.perf_counter()
    try:
        codec = resolve_codec(codec, out_uri)
    except ValueError as exc:
        raise RsrayError(f"--codec: {exc}") from exc
    _clear_output(out_uri, overwrite)
    print(f"discovering {source.spec.name} patches ...", flush=True)
    discovery = source.discover()
    spec = source.spec  # discover() may refine it (e.g. find the synthetic marker)
    holdout_info: dict[str, Any] = {}
    if holdout:
        rules = parse_holdout(holdout)
        holdout_info = apply_holdout(discovery.items, rules, dataset=spec.name)
        print(f"holdout {', '.join(holdout)}: {holdout_info['moved']} patch(es) moved to the "
              f"'{OOD_SPLIT}' split", flush=True)
    counts = Counter(it["split"] for it in discovery.items)
    print(f"found {len(discovery.items)} usable-looking patches "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}), "
          f"{len(discovery.rejects)} rejected while pairing", flush=True)
    if not discovery.items:
        raise RsrayError(f"{spec.name}: no usable patches found.\n"
                         + summarise_rejects(discovery.rejects))
    rows_per_shard = max(1, int(target_shard_mb * 2**20 // _row_bytes(spec)))
    chunks = _chunks(discovery, rows_per_shard)
    meta_keys = list(spec.meta_keys)
    group_rows = row_group_rows(spec)

    ensure_ray()
    ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
    written = ds.map(
        lambda chunk: _write_chunk(source, out_uri, chunk, meta_keys, codec, group_rows),
        concurrency=concurrency,
    )
    shards: list[ShardInfo] = []
    rejects: list[Reject] = list(discovery.rejects)
    moments = {g.name: [BandMoments() for _ in g.bands] for g in spec.groups}
    moments[TARGET_MOMENTS] = [BandMoments() for _ in spec.classes]
    flag_counts: dict[str, dict[str, int]] = {}
    done_items = 0
    sizes = {(c["split"], c["index"]): len(c["items"]) for c in chunks}
    total = len(discovery.items)
    print(f"writing {len(chunks)} shard(s) of up to {rows_per_shard} rows ({codec}, row groups "
          f"of {group_rows}) to {out_uri} ...",
          flush=True)
    bar = Progress(total=total, desc="prepare", unit="patch")
    for row in written.iter_rows():
        before = done_items
        if row["shard"]:
            info = ShardInfo(**json.loads(row["shard"]))
            shards.append(info)
            done_items += sizes[(info.split, int(info.path[-13:-8]))]
        chunk_rejects = json.loads(row["rejects"])
        rejects.extend(chunk_rejects)
        if not row["shard"]:
            done_items += len(chunk_rejects)
        for g, ms in json.loads(row["moments"]).items():
            for b, (n, mean, m2) in enumerate(ms):
                moments[g][b].merge(BandMoments(int(n), float(mean), float(m2)))
        chunk_flags = json.loads(row["flags"])
        for k, n in chunk_flags["counts"].items():
            per_split = flag_counts.setdefault(k, {})
            per_split[chunk_flags["split"]] = per_split.get(chunk_flags["split"], 0) + int(n)
        bar.update(done_items - before)
        bar.set_postfix(shards=len(shards))
    bar.close()
    shards.sort(key=lambda s: s.path)
    if not shards:
        raise RsrayError(f"{spec.name}: every patch was rejected; nothing written.\n"
                         + summarise_rejects(rejects))
    band_stats: dict[str, dict[str, dict[str, float]]] = {}
    modalities: dict[str, dict[str, Any]] = {}
    for m in spec.modalities:
        band_stats[m.name] = {}
        modalities[m.name] = {"bands": list(m.bands),
                              "groups": {g.name: g.to_dict() for g in m.groups}}
        for g in m.groups:
            for b, band in enumerate(g.bands):
                mo = moments[g.name][b]
                band_stats[m.name][band] = {"mean": mo.mean, "std": mo.std, "pixels": mo.n}
        _given_stats(band_stats[m.name], m.name, m.bands, discovery.info.get("given_stats"))
        if m.name in spec.optional_modalities:
            modalities[m.name]["optional"] = True
    if not any(s.split == "train" for s in shards):
        print("warning: no training shard; band statistics are empty", flush=True)
    label_info = dict(spec.label_info)
    if spec.task == "regression":  # what the loss standardises with (training split only)
        label_info["target_stats"] = {
            name: {"mean": mo.mean, "std": mo.std, "n": mo.n}
            for name, mo in zip(spec.classes, moments[TARGET_MOMENTS], strict=True)}
    manifest = Manifest(
        dataset=spec.name,
        task=spec.task,
        classes=list(spec.classes),
        modalities=modalities,
        shards=shards,
        band_stats=band_stats,
        rejects=sorted(rejects, key=lambda r: r["path"]),
        synthetic=spec.synthetic,
        info={**discovery.info, "rows_per_shard": rows_per_shard,
              "target_shard_mb": target_shard_mb, "label": label_info,
              **({"holdout": holdout_info} if holdout_info else {}),
              **({"flags": flag_counts} if flag_counts else {})},
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        storage={"codec": codec, "layout": "fixed", "row_group_rows": group_rows},
        uri=out_uri.rstrip("/"),
    )
    write_manifest(out_uri, manifest)
    seconds = time.perf_counter() - t0
    total_bytes = sum(s.bytes for s in shards)
    rows = sum(s.rows for s in shards)
    label = " (SYNTHETIC data)" if spec.synthetic else ""
    print(f"wrote {rows} rows in {len(shards)} shard(s), {total_bytes / 2**20:.1f} MiB "
          f"({total_bytes / max(rows, 1) / 1024:.0f} KiB/sample) in {seconds:.1f} s{label}",
          flush=True)
    print("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(manifest.splits.items())),
          flush=True)
    print(summarise_rejects(rejects), flush=True)
    return PrepareResult(uri=out_uri, manifest=manifest, seconds=seconds, rejects=rejects)


def prepare_from_args(args: argparse.Namespace) -> Any:
    """Run ``prepare`` for ``args.dataset`` with the parsed flags."""
    from rsray.data.sources.covariates import wrap_from_args

    entry = get_dataset(args.dataset)
    source = wrap_from_args(entry.source_from_args(args), args)
    return prepare(source, args.out, target_shard_mb=args.shard_mb, overwrite=args.overwrite,
                   holdout=list(args.holdout) or None, codec=getattr(args, "codec", "auto"))


def synthetic_shards(dataset: str, root: str | Path, n: int, seed: int = 0,
                     holdout: Sequence[str] = ()) -> str:
    """Synthetic raw data + shards of ``dataset`` under ``root`` (reused when already there)."""
    entry = get_dataset(dataset)
    write_synthetic, synthetic_source = require_twin(entry)
    raw, shards = Path(root) / "raw", Path(root) / "shards"
    stamp = raw / "rsray_synth.json"
    want = {"dataset": dataset, "n": n, "seed": seed, "holdout": list(holdout)}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        print(f"[rsray] writing {n} SYNTHETIC {dataset} samples to {raw}", flush=True)
        write_synthetic(raw, n, seed)
        stamp.write_text(json.dumps(want))
        if (shards / MANIFEST_NAME).is_file():
            (shards / MANIFEST_NAME).unlink()
    if not (shards / MANIFEST_NAME).is_file():
        prepare(synthetic_source(raw), str(shards), overwrite=True,
                holdout=list(holdout) or None)
    return str(shards.resolve())
