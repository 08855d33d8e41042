"""Streaming input: Ray Data ``read_parquet`` -> decode -> augment, then resample + normalise.

Two stages, split where the data is smallest:

1. In Ray Data tasks (CPU nodes): each band-group column is decoded with one ``np.frombuffer``
   per batch into its *native* dtype and resolution (uint16 S2 at 120/60/20 px, float32/16 S1),
   then augmented there (:mod:`rsray.data.augment`: crop-and-resize in relative coordinates,
   flips and rot90, which commute with the later upsampling; modality dropping is recorded as
   a ``drop_<modality>`` flag). What crosses the object store is ~2.5x smaller
   than float32 at 120 px.
2. In the training worker, on its device (the GPU when there is one): :func:`finalize_batch`
   casts to float32, resamples coarse groups to ``image_size``, concatenates the groups of a
   modality, normalises with the manifest's band statistics and zeroes dropped modalities.

The datasets built here are handed to ``TorchTrainer(datasets=...)``; each worker pulls its part
with ``ray.train.get_dataset_shard(split).iter_torch_batches(...)`` and calls
:func:`finalize_batch` to get ``{modality: (N, C, H, W) float32, "label": (N, K) float32}``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsray.config import DataConfig
from rsray.data import augment as aug
from rsray.data.shards import Manifest, pyarrow_fs, read_manifest, verify_shards
from rsray.errors import ConfigError, ShardIntegrityError

DECODE_BATCH_ROWS = 128
READ_BLOCKS_PER_SHARD = 4


@dataclass(frozen=True)
class GroupPlan:
    """How to decode one band group column."""

    column: str
    shape: tuple[int, ...]
    """``(C, s, s)`` image, ``(max_len, C, s, s)`` series (padded length), ``(D,)`` vector."""
    dtype: str
    kind: str = "image"
    keep: tuple[int, ...] | None = None
    """Channels of the group that are used (``data.bands``); ``None``: all."""


@dataclass(frozen=True)
class ModalityPlan:
    """How to build one modality tensor from its band groups."""

    name: str
    groups: tuple[GroupPlan, ...]
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str = "image"
    order: tuple[int, ...] | None = None
    """Permutation from the groups' kept channels to ``bands`` (``data.bands`` order)."""


@dataclass(frozen=True)
class DecodePlan:
    """Everything a Ray Data task needs to turn shard rows into model inputs."""

    modalities: tuple[ModalityPlan, ...]
    num_classes: int
    image_size: int
    resample: str
    task: str = "multilabel"
    label_size: int = 0
    """Segmentation: side of the stored mask."""
    train_fraction: float = 1.0
    fraction_seed: int = 0
    check_finite: bool = False
    """Check every element of every float modality for NaN/inf (``data.check_finite``, a debug
    switch); otherwise only the cheap guard of :func:`_finite_guard` runs."""

    @property
    def columns(self) -> list[str]:
        """Parquet columns to read (unused groups and metadata are never read)."""
        cols = ["label"]
        if self.train_fraction < 1.0:
            cols.append("patch_id")
        for m in self.modalities:
            for g in m.groups:
                cols.append(g.column)
                if g.kind == "series":
                    cols += [f"{g.column}_shape", f"{g.column}_dates"]
        return cols

    @property
    def channels(self) -> dict[str, int]:
        """Raster modality name -> channels (the model's ``modalities`` argument).

        Vector modalities are not here: they form the ``metadata`` input (:attr:`metadata_dim`).
        """
        return {m.name: len(m.bands) for m in self.modalities if m.kind != "vector"}

    @property
    def metadata_dim(self) -> int:
        """Length of the ``metadata`` vector (all vector modalities concatenated)."""
        return sum(len(m.bands) for m in self.modalities if m.kind == "vector")

    @property
    def spatial(self) -> tuple[ModalityPlan, ...]:
        """Image and series modalities (what flips and rotations apply to)."""
        return tuple(m for m in self.modalities if m.kind != "vector")


def make_plan(manifest: Manifest, cfg: DataConfig, *, for_training: bool = False) -> DecodePlan:
    """Choose modalities/groups from ``cfg`` and take their statistics from the manifest.

    ``for_training`` applies ``cfg.train_fraction`` (the training split's plan only).
    """
    plans = []
    for name in cfg.modalities or list(manifest.modalities):
        if name not in manifest.modalities:
            raise ConfigError(
                f"data.modalities: {name!r} is not in the shard set {manifest.uri} "
                f"(it has {', '.join(manifest.modalities)})"
            )
        groups, bands, kinds = [], [], set()
        wanted = _wanted_bands(manifest, cfg, name)
        for gname, g in manifest.modalities[name]["groups"].items():
            if g.get("optional") and not cfg.include_60m and wanted is None:
                continue
            keep = None if wanted is None else tuple(
                i for i, b in enumerate(g["bands"]) if b in wanted)
            if keep is not None and not keep:
                continue  # no selected band in this group: it is never read
            kind = g.get("kind", "image")
            kinds.add(kind)
            c = len(g["bands"])
            if kind == "vector":
                shape: tuple[int, ...] = (c,)
            elif kind == "series":
                length = cfg.series_len or int(g["max_len"])
                shape = (length, c, g["size"], g["size"])
            else:
                shape = (c, g["size"], g["size"])
            groups.append(GroupPlan(gname, shape, g["dtype"], kind, keep))
            bands += [g["bands"][i] for i in keep] if keep is not None else g["bands"]
        order = None
        if wanted is not None:
            order = tuple(bands.index(b) for b in wanted)
            bands = list(wanted)
        if len(kinds) != 1:
            raise ShardIntegrityError(f"{manifest.uri}: modality {name} mixes group kinds "
                                      f"{sorted(kinds)}")
        kind = kinds.pop()
        if kind == "series" and len(groups) != 1:
            raise ShardIntegrityError(f"{manifest.uri}: series modality {name} must be one group")
        stats = manifest.band_stats.get(name, {})
        mean, std = [], []
        for b in bands:
            s = stats.get(b)
            if not s or not np.isfinite(s["mean"]) or not np.isfinite(s["std"]):
                raise ShardIntegrityError(
                    f"{manifest.uri}: manifest has no training statistics for {name}/{b}; "
                    "prepare the data with a non-empty training split"
                )
            mean.append(float(s["mean"]))
            # A band constant in training (a 0/1 indicator never set) carries no information
            # there; dividing by ~0 would turn an unseen value at evaluation into ~1e6.
            std.append(float(s["std"]) if float(s["std"]) > 1e-6 else 1.0)
        plans.append(ModalityPlan(name, tuple(groups), tuple(bands), tuple(mean), tuple(std),
                                  kind, order))
    label = manifest.info.get("label", {})
    return DecodePlan(
        tuple(plans), len(manifest.classes), cfg.image_size, cfg.resample,
        task=manifest.task, label_size=int(label.get("size", 0)),
        train_fraction=cfg.train_fraction if for_training else 1.0,
        fraction_seed=cfg.fraction_seed, check_finite=cfg.check_finite,
    )


def _wanted_bands(manifest: Manifest, cfg: DataConfig, name: str) -> list[str] | None:
    """``data.bands`` of modality ``name`` (checked against the shard set), or ``None``."""
    wanted = cfg.bands.get(name)
    if wanted is None:
        return None
    have = [b for g in manifest.modalities[name]["groups"].values() for b in g["bands"]]
    missing = [b for b in wanted if b not in have]
    if missing:
        raise ConfigError(f"data.bands.{name}: {missing} are not bands of {name} in "
                          f"{manifest.uri} (it has {', '.join(have)})")
    return list(wanted)


def _labels(col: Any) -> np.ndarray:
    arr = np.asarray(col)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v) for v in arr])
    return arr.astype(np.float32)


def _one_chunk(column: Any) -> Any:
    """An Arrow ``Array`` for an Arrow column (several chunks are combined: one copy)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column


def _is_arrow(column: Any) -> bool:
    import pyarrow as pa

    return isinstance(column, pa.Array | pa.ChunkedArray)


def _arrow_offsets(arr: Any) -> np.ndarray:
    """The ``len(arr) + 1`` value offsets of a (large) binary Arrow array, as a view."""
    import pyarrow as pa

    dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr) + 1,
                         offset=arr.offset * np.dtype(dtype).itemsize)


def _arrow_bytes(arr: Any, row_bytes: int, name: str) -> np.ndarray:
    """The ``len(arr) * row_bytes`` value bytes of a binary Arrow array: a view, no copy.

    ``fixed_size_binary`` (today's layout) and variable ``binary`` whose rows all have
    ``row_bytes`` bytes (older shard sets) both keep their values back to back in one buffer.
    """
    import pyarrow as pa

    n = len(arr)
    if arr.null_count:
        raise ShardIntegrityError(f"column {name}: {arr.null_count} null row(s)")
    if pa.types.is_fixed_size_binary(arr.type):
        if arr.type.byte_width != row_bytes:
            raise ShardIntegrityError(
                f"column {name}: {arr.type.byte_width} bytes per row, expected {row_bytes}; "
                "the shard does not match its manifest")
        return np.frombuffer(arr.buffers()[1], dtype=np.uint8, count=n * row_bytes,
                             offset=arr.offset * row_bytes)
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        offsets = _arrow_offsets(arr)
        sizes = np.diff(offsets)
        if np.any(sizes != row_bytes):
            bad = int(np.argmax(sizes != row_bytes))
            raise ShardIntegrityError(
                f"column {name}: row {bad} has {int(sizes[bad])} bytes, expected {row_bytes}; "
                "the shard does not match its manifest")
        return np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=n * row_bytes,
                             offset=int(offsets[0]))
    raise ShardIntegrityError(f"column {name}: Arrow type {arr.type}, expected binary")


def _decode_fixed(column: Any, n: int, shape: tuple[int, ...], dtype: str, name: str) -> np.ndarray:
    """A same-shape column -> ``(n, *shape)`` array of ``dtype``.

    Arrow columns (``batch_format="pyarrow"``: fixed-size or variable binary) and NumPy
    ``S``-dtype or numeric arrays decode as read-only views with no copy; a NumPy object array
    of ``bytes`` (Ray's ``numpy`` batch format on binary columns) is joined into one buffer
    first (one copy).
    """
    row_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if n == 0:
        return np.empty((0, *shape), dtype=dtype)
    if _is_arrow(column):
        arr = _one_chunk(column)
        if len(arr) != n:
            raise ShardIntegrityError(f"column {name}: {len(arr)} rows, expected {n}")
        view = _arrow_bytes(arr, row_bytes, name).view(dtype).reshape(n, *shape)
        view.flags.writeable = False  # Arrow memory may be shared (object store, other views)
        return view
    col = np.asarray(column) if not isinstance(column, list) else None
    if col is not None and col.dtype.kind in "SV" and col.ndim == 1 and col.flags.c_contiguous:
        buf: Any = col  # numpy fixed-width bytes: already one buffer
        size = col.nbytes
    elif col is not None and col.dtype.kind in "iuf" and col.shape == (n, *shape):
        return col.astype(dtype, copy=False)  # a tensor column already decoded
    else:
        buf = b"".join(column)
        size = len(buf)
    expected = n * row_bytes
    if size != expected:
        raise ShardIntegrityError(
            f"column {name}: {size} bytes for {n} rows, expected {expected} "
            f"(shape {shape}, {dtype}); the shard does not match its manifest"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(n, *shape)


def _pylist(column: Any) -> Any:
    """Rows of a small column (shapes, dates, ids) as Python values."""
    return column.to_pylist() if _is_arrow(column) else column


def _decode_series(batch: Any, g: GroupPlan, n: int) -> tuple[np.ndarray, ...]:
    """Variable-length series -> ``(n, L, C, s, s)`` zero-padded, ``(n, L)`` mask and dates.

    A sample with more dates than the plan's length ``L`` keeps its first ``L`` dates. Arrow
    columns are read through their offsets (a view per row, no ``bytes`` objects).
    """
    length = g.shape[0]
    out = np.zeros((n, *g.shape), dtype=g.dtype)
    mask = np.zeros((n, length), dtype=np.uint8)
    dates = np.zeros((n, length), dtype=np.int32)
    shapes, all_dates = _pylist(batch[f"{g.column}_shape"]), _pylist(batch[f"{g.column}_dates"])
    column = batch[g.column]
    if _is_arrow(column):
        arr = _one_chunk(column)
        offsets, data = _arrow_offsets(arr), arr.buffers()[2]

        def row(i: int) -> Any:
            return memoryview(data)[int(offsets[i]):int(offsets[i + 1])]
    else:
        def row(i: int) -> Any:
            return column[i]
    for i in range(n):
        shape = tuple(int(v) for v in shapes[i])
        if shape[1:] != g.shape[1:]:
            raise ShardIntegrityError(f"column {g.column}: row {i} has shape {shape}, the "
                                      f"manifest says (T, {', '.join(map(str, g.shape[1:]))})")
        arr_i = np.frombuffer(row(i), dtype=g.dtype).reshape(shape)
        t = min(shape[0], length)
        out[i, :t] = arr_i[:t]
        mask[i, :t] = 1
        dates[i, :t] = np.asarray(all_dates[i], dtype=np.int32)[:t]
    return out, mask, dates


def _decode_labels(column: Any, n: int) -> np.ndarray:
    """Classification labels (fixed-size list of uint8) -> ``(n, K)`` uint8."""
    if _is_arrow(column):
        arr = _one_chunk(column)
        if arr.null_count:
            raise ShardIntegrityError(f"column label: {arr.null_count} null row(s)")
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1).astype(np.uint8, copy=False)
    return _labels(column).astype(np.uint8)


def decode_raw(batch: Any, plan: DecodePlan) -> dict[str, np.ndarray]:
    """Shard rows -> native-dtype, native-resolution group arrays + labels.

    ``batch`` is a ``pyarrow.Table`` (Ray Data's ``batch_format="pyarrow"``: image groups
    become read-only views on the Arrow buffers, no copy) or a dict of columns (NumPy arrays
    or lists). Image groups become ``(N, C, s, s)``, vector groups ``(N, D)``, series groups
    ``(N, L, C, s, s)`` with ``<group>__mask`` and ``<group>__dates`` of shape ``(N, L)``.
    Labels: ``(N, K)`` uint8 for classification, ``(N, s, s)`` uint8 for segmentation.
    """
    n = len(batch["label"])
    keep = None
    if plan.train_fraction < 1.0:
        from rsray.data.splits import fraction_mask

        keep = fraction_mask([str(p) for p in _pylist(batch["patch_id"])], plan.train_fraction,
                             plan.fraction_seed)
    out: dict[str, np.ndarray] = {}
    if plan.task == "segmentation":
        s = plan.label_size
        out["label"] = _decode_fixed(batch["label"], n, (s, s), "uint8", "label")
    elif plan.task == "regression":  # float32 targets (N, T), finite (checked at prepare)
        out["label"] = _labels(_one_chunk(batch["label"]).flatten().to_numpy(
            zero_copy_only=False) if _is_arrow(batch["label"]) else batch["label"]).reshape(n, -1)
    else:
        out["label"] = _decode_labels(batch["label"], n)
    for m in plan.modalities:
        for g in m.groups:
            if g.kind == "series":
                x, mask, dates = _decode_series(batch, g, n)
                out[g.column], out[f"{g.column}__mask"], out[f"{g.column}__dates"] = x, mask, dates
            else:
                out[g.column] = _decode_fixed(batch[g.column], n, g.shape, g.dtype, g.column)
        out[f"drop_{m.name}"] = np.zeros(n, dtype=np.uint8)
    if keep is not None:
        out = {k: v[keep] for k, v in out.items()}
    return out


def _resize(x: Any, size: int, mode: str) -> Any:
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def finalize_batch(batch: dict[str, Any], plan: DecodePlan) -> dict[str, Any]:
    """Native group arrays -> normalised float32 model inputs.

    Works on torch tensors (on any device: the training worker calls it on its GPU) or NumPy
    arrays (converted). Returns:

    * image modality ``m``: ``(N, C, image_size, image_size)``;
    * series modality ``m``: ``(N, L, C, s, s)`` at native size, padded dates zero, plus
      ``m_mask`` (bool, True = real date) and ``m_dates`` (float day of year, 0 = padding);
    * ``metadata``: ``(N, D)``, every vector modality concatenated in plan order;
    * ``label``: ``(N, K)`` float32 for classification; ``(N, image_size, image_size)`` int64
      class indices for segmentation (nearest-neighbour resized if needed).
    """
    import torch

    def tensor(x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x
        x = np.ascontiguousarray(x)
        if x.flags.writeable:
            return torch.from_numpy(x)
        # A read-only view on Arrow / object-store memory (decode_raw makes no copy): every
        # operation below makes a new tensor (casts, normalisation, masking are out of place),
        # so torch's "not writable" warning does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x)

    size = plan.image_size
    out: dict[str, Any] = {}
    if plan.task == "segmentation":
        mask = tensor(batch["label"]).long()
        if mask.shape[-1] != size:
            mask = _resize(mask[:, None].float(), size, "nearest")[:, 0].long()
        out["label"] = mask
    else:
        out["label"] = tensor(batch["label"]).float()
    vectors = []
    for m in plan.modalities:
        x = _modality(batch, m, plan, tensor)
        drop = batch.get(f"drop_{m.name}")
        if drop is not None:
            keep = (tensor(drop).to(x.device) == 0).float().reshape(-1, *([1] * (x.ndim - 1)))
            x = x * keep
        _finite_guard(batch, m, x, plan.check_finite)
        if m.kind == "vector":
            vectors.append(x)
        else:
            out[m.name] = x
        if m.kind == "series":
            g = m.groups[0].column
            out[f"{m.name}_mask"] = tensor(batch[f"{g}__mask"]).bool()
            out[f"{m.name}_dates"] = tensor(batch[f"{g}__dates"]).float()
    if vectors:
        out["metadata"] = torch.cat(vectors, dim=1)
    return out


def _finite_guard(batch: dict[str, Any], m: ModalityPlan, x: Any, full: bool) -> None:
    """Raise if modality ``m`` holds NaN/inf after decoding.

    Integer band groups (uint16 S2, uint8 masks) cannot be non-finite, and the manifest's
    statistics are finite (:func:`make_plan` checks them), so those are never scanned. Float
    groups were validated by ``rsray prepare`` when it wrote them; the guard reduces ``x`` to
    one sum (a non-finite element makes the sum non-finite) instead of an element-wise
    ``isfinite`` pass, which was 43 % of :func:`finalize_batch`. ``full`` (``data.check_finite``)
    restores the element-wise check.
    """
    import torch

    if not any(np.dtype(g.dtype).kind == "f" for g in m.groups):
        return
    # A sum can also overflow to inf on huge finite values: confirm element-wise before failing.
    if (full or not bool(torch.isfinite(x.sum()))) and not bool(torch.isfinite(x).all()):
        raise ShardIntegrityError(f"modality {m.name}: non-finite values after decoding "
                                  "(the shards do not match what rsray prepare wrote)")


def _modality(batch: dict[str, Any], m: ModalityPlan, plan: DecodePlan, tensor: Any) -> Any:
    """One normalised modality tensor (see :func:`finalize_batch`)."""
    import torch

    if m.kind == "series":
        g = m.groups[0].column
        x = _keep(tensor(batch[g]).float(), m.groups[0].keep, dim=2)
        if m.order is not None:
            x = x[:, :, list(m.order)]
        shape = (1, 1, -1, 1, 1)
        mean = torch.tensor(m.mean, dtype=torch.float32, device=x.device).reshape(shape)
        std = torch.tensor(m.std, dtype=torch.float32, device=x.device).reshape(shape)
        valid = tensor(batch[f"{g}__mask"]).to(x.device).float().reshape(*x.shape[:2], 1, 1, 1)
        return (x - mean) / std * valid
    parts = [_keep(tensor(batch[g.column]).float(), g.keep, dim=1) for g in m.groups]
    if m.kind == "vector":
        x = torch.cat(parts, dim=1)
        shape: tuple[int, ...] = (1, -1)
    else:
        x = torch.cat([_resize(p, plan.image_size, plan.resample) for p in parts], dim=1)
        shape = (1, -1, 1, 1)
    if m.order is not None:
        x = x[:, list(m.order)]
    mean = torch.tensor(m.mean, dtype=torch.float32, device=x.device).reshape(shape)
    std = torch.tensor(m.std, dtype=torch.float32, device=x.device).reshape(shape)
    return (x - mean) / std


def _keep(x: Any, keep: tuple[int, ...] | None, dim: int) -> Any:
    """The ``keep`` channels of ``x`` along ``dim`` (all when ``keep`` is ``None``)."""
    import torch

    if keep is None or len(keep) == x.shape[dim]:
        return x
    return x.index_select(dim, torch.tensor(keep, device=x.device))


def decode_batch(batch: dict[str, Any], plan: DecodePlan) -> dict[str, np.ndarray]:
    """Shard rows -> normalised float32 arrays at ``plan.image_size`` in one step (NumPy)."""
    return {k: v.numpy() for k, v in finalize_batch(decode_raw(batch, plan), plan).items()}


def augment_raw(
    batch: dict[str, np.ndarray],
    plan: DecodePlan,
    *,
    desync: bool = False,
    modality_dropout: float = 0.0,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    ops: Mapping[str, Sequence[str]] | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Random crop-and-resize, flips and quarter turns, and modality dropping (training only).

    Runs on native-resolution groups, before resampling (see :mod:`rsray.data.augment`). Every
    group of a modality gets the modality's transform (they cover the same ground); series get
    one transform for all their dates. ``desync`` draws a transform per modality (the thesis'
    desynchronised flipping and cropping), otherwise a sample's modalities share one. ``ops``
    maps a modality to the operations it gets (default: all of ``hflip``, ``rot90``, ``crop``;
    cropping only when ``crop_scale`` is below 1). A segmentation mask gets the shared transform,
    so ``desync`` is ignored for segmentation (the mask must stay aligned with every input).
    With probability ``modality_dropout`` one modality of a sample, chosen at random, is flagged
    in ``drop_<modality>`` and zeroed after normalisation (its training mean); a sample never
    loses all of them.
    """
    rng = rng or np.random.default_rng()
    ops = ops or {}
    n = len(batch["label"])
    desync = desync and plan.task != "segmentation"
    all_ops = tuple(sorted({o for m in plan.spatial for o in aug.modality_ops(ops, m.name)}))
    shared = aug.draw(rng, n, all_ops, crop_scale)
    for m in plan.spatial:
        mine = aug.modality_ops(ops, m.name)
        d = aug.draw(rng, n, mine, crop_scale) if desync else _restrict(shared, mine)
        for g in m.groups:
            batch[g.column] = aug.apply(batch[g.column], d)
    if plan.task == "segmentation":
        batch["label"] = aug.apply(batch["label"], shared, mode="nearest")
    names = [m.name for m in plan.modalities]
    if modality_dropout > 0 and len(names) > 1:
        drop = rng.random(n) < modality_dropout
        which = rng.integers(0, len(names), size=n)
        for i in np.nonzero(drop)[0]:
            batch[f"drop_{names[int(which[i])]}"][i] = 1
    return batch


def augment_device(
    batch: dict[str, Any],
    plan: DecodePlan,
    *,
    desync: bool = False,
    modality_dropout: float = 0.0,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    ops: Mapping[str, Sequence[str]] | None = None,
    generator: Any = None,
) -> dict[str, Any]:
    """:func:`augment_raw` on torch tensors, on whatever device they are (``augment_on=device``).

    Same operations, per-modality choices (``ops``), synchronised or desynchronised draws,
    aligned segmentation mask and modality dropping as :func:`augment_raw`; the parameters are
    drawn on the device with ``generator`` (a ``torch.Generator`` there), so a batch on a GPU
    never comes back to the host. Labels other than a segmentation mask are not touched (they
    may be multi-hot, class indices or float regression targets). Returns a new dict.
    """
    import torch

    out = dict(batch)
    ops = ops or {}
    label = out["label"]
    n, device = int(label.shape[0]), label.device
    desync = desync and plan.task != "segmentation"
    all_ops = tuple(sorted({o for m in plan.spatial for o in aug.modality_ops(ops, m.name)}))
    shared = aug.draw_torch(generator, n, all_ops, crop_scale, device)
    for m in plan.spatial:
        mine = aug.modality_ops(ops, m.name)
        d = (aug.draw_torch(generator, n, mine, crop_scale, device) if desync
             else _restrict_torch(shared, mine))
        for g in m.groups:
            out[g.column] = aug.apply_torch(out[g.column], d)
    if plan.task == "segmentation":
        out["label"] = aug.apply_torch(label, shared, mode="nearest")
    names = [m.name for m in plan.modalities]
    if modality_dropout > 0 and len(names) > 1:
        drop = torch.rand(n, generator=generator, device=device) < modality_dropout
        which = torch.randint(0, len(names), (n,), generator=generator, device=device)
        for j, name in enumerate(names):
            key = f"drop_{name}"
            flag = out.get(key)
            hit = (drop & (which == j)).to(torch.uint8)
            out[key] = hit if flag is None else torch.maximum(flag.to(torch.uint8), hit)
    return out


def _restrict_torch(d: aug.Draw, ops: Sequence[str]) -> aug.Draw:
    """:func:`_restrict` for a draw of tensors."""
    import torch

    n = len(d.k)
    return aug.Draw(
        d.k if "rot90" in ops else torch.zeros_like(d.k),
        d.flip if "hflip" in ops else torch.zeros_like(d.flip),
        d.box if "crop" in ops else aug.identity_box_torch(n, d.box.device),
    )


def _restrict(d: aug.Draw, ops: Sequence[str]) -> aug.Draw:
    """The shared draw without the operations a modality does not get."""
    n = len(d.k)
    return aug.Draw(
        d.k if "rot90" in ops else np.zeros(n, dtype=d.k.dtype),
        d.flip if "hflip" in ops else np.zeros(n, dtype=bool),
        d.box if "crop" in ops else np.tile(np.array([1.0, 0.0, 0.0]), (n, 1)),
    )


def check_augment(plan: DecodePlan, cfg: DataConfig) -> None:
    """Reject augmentation settings that would misalign a segmentation mask or name no modality.

    A segmentation mask gets one transform, so every input must get the same operations, and
    cropping needs inputs that cover the same ground (FLAIR-2's Sentinel-2 series covers a
    larger area than the aerial tile, so a relative box would cut different ground).
    """
    names = {m.name for m in plan.spatial}
    unknown = set(cfg.augment_ops) - names
    if unknown:
        raise ConfigError(f"data.augment_ops: {sorted(unknown)} are not image modalities of "
                          f"this shard set (it has {', '.join(sorted(names))})")
    if plan.task != "segmentation":
        return
    per = {tuple(sorted(aug.modality_ops(cfg.augment_ops, m))) for m in names}
    if len(per) > 1:
        raise ConfigError("data.augment_ops: a segmentation mask gets one transform, so every "
                          "input modality must get the same operations")
    crops = cfg.crop_scale[0] < 1.0 and "crop" in next(iter(per), ())
    if crops and any(m.kind == "series" for m in plan.spatial):
        raise ConfigError("data.crop_scale: cropping a segmentation shard set with a series "
                          "modality would cut different ground (the series covers a larger "
                          "area); keep data.crop_scale=[1.0, 1.0]")


def augment_kwargs(cfg: DataConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`augment_raw` that ``cfg`` sets."""
    return {"desync": cfg.desync_augment, "modality_dropout": cfg.modality_dropout,
            "crop_scale": (float(cfg.crop_scale[0]), float(cfg.crop_scale[1])),
            "ops": {k: tuple(v) for k, v in cfg.augment_ops.items()}}


def transform(batch: dict[str, Any], plan: DecodePlan, augment_with: dict[str, Any] | None,
              seed: int | None = None) -> dict[str, np.ndarray]:
    """What every Ray Data task runs on a batch of shard rows: decode, then augment if asked.

    ``augment_with`` is :func:`augment_kwargs` of the config (``None``: evaluation, no
    augmentation).
    """
    out = decode_raw(batch, plan)
    if augment_with is not None:
        rng = np.random.default_rng(seed)
        out = augment_raw(out, plan, rng=rng, **augment_with)
    return out


def build_split(manifest: Manifest, split: str, cfg: DataConfig, *, augment: bool) -> Any:
    """A Ray Dataset streaming one split, decoded (and augmented if ``augment``)."""
    import ray

    paths = manifest.shard_paths(split)
    if not paths:
        raise ShardIntegrityError(f"{manifest.uri}: the shard set has no '{split}' split "
                                  f"(it has {', '.join(sorted(manifest.splits))})")
    plan = make_plan(manifest, cfg, for_training=(split == "train"))
    if split == "train" and plan.train_fraction < 1.0:
        print(f"[rsray] training on a nested {plan.train_fraction:.0%} subset of the training "
              f"split (data.fraction_seed={plan.fraction_seed})", flush=True)
    # Several read tasks per shard (by row group): a 128 MiB shard is otherwise one block,
    # which serialises reading on clusters with few shards (measured +30 % on 2 cores).
    # The manifest names every file, so the V1 reader reads that list as given: the default
    # (V2) reader lists the files again through new FooterReader actors on every pass (3-4 s
    # of start-up per epoch and split) and ignores ``override_num_blocks``.
    with _listed_parquet_reader():
        ds = ray.data.read_parquet(paths, filesystem=pyarrow_fs(manifest.uri),
                                   columns=plan.columns,
                                   override_num_blocks=READ_BLOCKS_PER_SHARD * len(paths))
    if augment:
        check_augment(plan, cfg)
    return ds.map_batches(
        transform,
        fn_kwargs={"plan": plan, "augment_with": augment_kwargs(cfg) if augment else None},
        batch_size=DECODE_BATCH_ROWS,
        batch_format="pyarrow",  # band columns decode as views on Arrow buffers (no copy)
    )


def default_splits(cfg: DataConfig) -> tuple[str, ...]:
    """``train`` plus the evaluation splits of ``cfg`` (``data.eval_splits``)."""
    return ("train", *[s for s in cfg.eval_splits if s != "train"])


def load_shard_set(cfg: DataConfig, splits: tuple[str, ...] | None = None) -> Manifest:
    """Read the manifest at ``cfg.uri`` and (unless disabled) verify the shards of ``splits``."""
    splits = splits or default_splits(cfg)
    manifest = read_manifest(cfg.uri)
    if cfg.verify_checksums:
        verify_shards(manifest, list(splits))
    return manifest


def build_datasets(
    cfg: DataConfig, splits: tuple[str, ...] | None = None, manifest: Manifest | None = None
) -> tuple[Manifest, dict[str, Any]]:
    """Manifest and one Ray Dataset per split (default: train + ``data.eval_splits``).

    Only ``train`` is augmented (and subsampled by ``data.train_fraction``).
    """
    splits = splits or default_splits(cfg)
    manifest = manifest or load_shard_set(cfg, splits)
    datasets = {
        s: build_split(manifest, s, cfg, augment=(s == "train" and cfg.augment)) for s in splits
    }
    return manifest, datasets


@contextlib.contextmanager
def _listed_parquet_reader() -> Iterator[None]:
    """Build ``read_parquet`` datasets with Ray Data's V1 reader (an explicit file list)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    before = getattr(ctx, "use_datasource_v2", None)
    if before is None:  # a Ray without the switch has one reader only
        yield
        return
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before


def decode_key(plan: DecodePlan) -> tuple[Any, ...]:
    """What :func:`decode_raw` output depends on: plans with equal keys decode the same rows.

    Resampling, normalisation and augmentation happen later, so ``image_size``, ``resample``
    and band statistics are not part of it: trials that differ only there share a cached split.
    """
    return (tuple((m.name, m.groups) for m in plan.modalities), plan.task, plan.label_size,
            plan.train_fraction, plan.fraction_seed)


def row_nbytes(plan: DecodePlan) -> int:
    """Bytes of one decoded row (native dtypes, native sizes; series padded to their length)."""
    total = (plan.label_size ** 2 if plan.task == "segmentation"
             else plan.num_classes * (4 if plan.task == "regression" else 1))
    for m in plan.modalities:
        total += 1  # drop flag
        for g in m.groups:
            total += int(np.prod(g.shape)) * np.dtype(g.dtype).itemsize
            if g.kind == "series":
                total += g.shape[0] * 5  # mask (uint8) + dates (int32)
    return int(total)


@dataclass
class CachedSplit:
    """A decoded, un-augmented split held in Ray's object store (``MaterializedDataset``)."""

    key: tuple[Any, ...]
    dataset: Any
    rows: int
    nbytes: int
    seconds: float


@dataclass
class TrainingData:
    """The datasets of one run and how its training split is augmented.

    ``augment`` holds :func:`augment_kwargs` when the training workers augment each batch
    themselves (the training split is cached, so it must be augmented anew every epoch);
    ``None`` when Ray Data augments (a streamed split) or augmentation is off.
    """

    datasets: dict[str, Any]
    augment: dict[str, Any] | None = None
    cached: dict[str, CachedSplit] = field(default_factory=dict)


def cache_splits(cfg: DataConfig, manifest: Manifest, splits: Sequence[str] | None = None,
                 *, have: Mapping[str, CachedSplit] | None = None) -> dict[str, CachedSplit]:
    """Read and decode ``splits`` once into the object store, if ``data.cache`` allows.

    ``auto`` caches when every split not already in ``have`` fits in ``data.cache_fraction``
    of the cluster's object store (estimated from the manifest's row counts); ``memory`` and
    ``device`` (whose workers then copy their share of the training split to their device)
    always; ``off`` never. Returns the cached splits (``have``'s included).
    """
    import time

    import ray

    out = dict(have or {})
    if cfg.cache == "off":
        return out
    todo = {}
    for s in splits or default_splits(cfg):
        plan = make_plan(manifest, cfg, for_training=(s == "train"))
        if s in out and out[s].key == decode_key(plan):
            continue
        rows = manifest.splits.get(s, 0)
        if s == "train":
            rows = int(np.ceil(rows * plan.train_fraction))
        todo[s] = (plan, rows, rows * row_nbytes(plan))
    if not todo:
        return out
    need = sum(n for _, _, n in todo.values())
    budget = cfg.cache_fraction * ray.cluster_resources().get("object_store_memory", 0.0)
    if cfg.cache == "auto" and need > budget:
        print(f"[rsray] streaming {', '.join(todo)}: {need / 2**20:.0f} MiB decoded exceeds "
              f"data.cache_fraction={cfg.cache_fraction} of the object store "
              f"({budget / 2**20:.0f} MiB)", flush=True)
        return out
    for s, (plan, rows, nbytes) in todo.items():
        t0 = time.perf_counter()
        ds = build_split(manifest, s, cfg, augment=False).materialize()
        out[s] = CachedSplit(decode_key(plan), ds, rows, nbytes, time.perf_counter() - t0)
        print(f"[rsray] {s}: {rows} rows ({nbytes / 2**20:.0f} MiB) decoded into the object "
              f"store in {out[s].seconds:.1f} s; every epoch reads them from memory", flush=True)
    return out


def training_datasets(cfg: DataConfig, manifest: Manifest,
                      shared: Mapping[str, CachedSplit] | None = None) -> TrainingData:
    """The datasets a training run needs: cached splits where they fit, streams elsewhere.

    ``shared`` are splits another process cached (the tune driver caches them once for all
    trials); a split whose :func:`decode_key` differs for this ``cfg`` is not taken from it.
    """
    splits = default_splits(cfg)
    cached = cache_splits(cfg, manifest, splits, have=shared)
    datasets: dict[str, Any] = {}
    # A stream is augmented by Ray Data (on the CPUs of the data tasks) unless the workers are
    # asked to augment on their device (``data.augment_on=device``).
    ray_augments = cfg.augment and cfg.augment_on != "device"
    for s in splits:
        c = cached.get(s)
        if c is not None and c.key == decode_key(make_plan(manifest, cfg,
                                                            for_training=(s == "train"))):
            datasets[s] = c.dataset
        else:
            datasets[s] = build_split(manifest, s, cfg, augment=(s == "train" and ray_augments))
    augment = None
    in_memory = "train" in cached and datasets["train"] is cached["train"].dataset
    if cfg.augment and (in_memory or not ray_augments):
        check_augment(make_plan(manifest, cfg, for_training=True), cfg)
        augment = augment_kwargs(cfg)
    return TrainingData(datasets, augment, cached)

