"""Arrow decoding: shard rows -> native-dtype, native-resolution NumPy arrays.

What every Ray Data task runs first (:func:`decode_raw`): each band-group column is decoded
with one ``np.frombuffer`` per batch into its *native* dtype and resolution (uint16 S2 at
120/60/20 px, float32/16 S1), as read-only views on the Arrow buffers where the layout allows
(no copy). Resampling and normalisation happen later, on the worker's device
(:mod:`rsray.data.finalize`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsray.data.plan import DecodePlan, GroupPlan
from rsray.errors import ShardIntegrityError


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


def _present_flags(column: Any, n: int) -> np.ndarray:
    """A ``present_<modality>`` column (Arrow or NumPy/list) as ``(n,)`` uint8."""
    if _is_arrow(column):
        column = _one_chunk(column).to_numpy(zero_copy_only=False)
    return np.asarray(column, dtype=np.uint8).reshape(n)


def decode_raw(batch: Any, plan: DecodePlan) -> dict[str, np.ndarray]:
    """Shard rows -> native-dtype, native-resolution group arrays + labels.

    ``batch`` is a ``pyarrow.Table`` (Ray Data's ``batch_format="pyarrow"``: image groups
    become read-only views on the Arrow buffers, no copy) or a dict of columns (NumPy arrays
    or lists). Image groups become ``(N, C, s, s)``, vector groups ``(N, D)``, series groups
    ``(N, L, C, s, s)`` with ``<group>__mask`` and ``<group>__dates`` of shape ``(N, L)``.
    Labels: ``(N, K)`` uint8 for classification, ``(N, s, s)`` uint8 for segmentation.
    ``drop_<modality>`` is ``(N,)`` uint8: 1 where an optional modality is missing (the shards'
    ``present_<modality>`` is 0), later also where augmentation drops it.
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
        out[f"drop_{m.name}"] = (_present_flags(batch[f"present_{m.name}"], n) == 0).astype(
            np.uint8) if m.optional else np.zeros(n, dtype=np.uint8)
    if keep is not None:
        out = {k: v[keep] for k, v in out.items()}
    return out

