"""How a dataset describes its modalities, and the contract between sources, shards and pipeline.

A *source* (one file per dataset under :mod:`rsray.data.sources`) knows the raw on-disk format.
It describes its data with a :class:`DatasetSpec`: modalities made of *band groups*, each group
being bands stored together because they share a resolution and a dtype (Sentinel-2's 10 m,
20 m and 60 m bands are three groups of modality ``s2``).

A band group has a *kind*:

* ``image``: one ``(bands, size, size)`` raster (S2 10 m bands, S1, an aerial tile, a DEM);
* ``series``: a time series ``(T, bands, size, size)`` with a variable number of dates ``T``
  (at most ``max_len``) and one integer date per step (FLAIR-2's Sentinel-2 super-patches);
* ``vector``: ``(bands,)`` numbers, e.g. GLOBE's metadata (latitude, elevation, day of year).

Shards store one row per sample with these columns:

* ``patch_id`` (string), ``split`` (string);
* ``label``: classification tasks (``multilabel``, ``multiclass``, ``binary``) store a
  ``list<uint8>`` of length ``len(classes)`` (multi-hot; one-hot for ``multiclass``; one 0/1
  per head for ``binary``); ``regression`` stores a ``list<float32>`` of length
  ``len(classes)`` (one continuous value per target, the class names being the target
  names; finite, checked at prepare); ``segmentation`` stores a binary column with the
  C-order bytes of a ``(size, size)`` uint8 class-index mask
  (``fixed_size_binary(size * size)``; variable ``binary`` in older sets) plus
  ``label_shape`` (list<int32>);
* per band group ``<group>``: the C-order bytes of the array in the group's stored dtype,
  as ``fixed_size_binary(nbytes)`` for image and vector groups (every row the same size, so
  a batch of rows is one contiguous Arrow buffer that decodes as a NumPy view, see
  :func:`group_arrow_type`) and variable ``binary`` for series groups (``T`` varies); plus
  ``<group>_shape`` (list<int32>); series groups add ``<group>_dates`` (list<int32>: day of
  year of each date). Shard sets written before this layout (``storage.layout = "binary"``
  in the manifest) store every group as variable ``binary``; readers accept both;
* source-specific string columns ``meta_<key>`` (e.g. ``meta_s1_patch``);
* ``present_<modality>`` (uint8, 1 = present) for each of the spec's
  ``optional_modalities`` (datasets whose samples may lack a modality).

The pipeline decodes groups; for image modalities it resamples the groups to one size and
concatenates them in spec order into one ``(C, H, W)`` float32 tensor keyed by the modality
name; series modalities become ``(T, C, h, w)`` padded to ``max_len`` with a date mask;
vector modalities are concatenated into the ``metadata`` vector models take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class BandGroup:
    """Bands stored together in one shard column: same pixel size, same dtype."""

    name: str
    """Column name in the shards, e.g. ``s2_10m``."""
    bands: tuple[str, ...]
    """Band names in channel order."""
    size: int
    """Pixels per side at native resolution."""
    dtype: str
    """NumPy dtype name as stored in the shards (``uint16``, ``float32``, ``float16``)."""
    optional: bool = False
    """Optional groups (S2 60 m bands) are read when present and may be skipped at prepare."""
    kind: str = "image"
    """``image`` ``(bands, size, size)``, ``series`` ``(T, bands, size, size)`` or ``vector``
    ``(bands,)``."""
    max_len: int = 0
    """Series only: the most dates a sample may have (the pipeline pads to this length)."""

    def __post_init__(self) -> None:
        if self.kind not in GROUP_KINDS:
            raise ValueError(f"band group {self.name}: kind {self.kind!r} is not one of "
                             + ", ".join(GROUP_KINDS))
        if self.kind == "series" and self.max_len < 1:
            raise ValueError(f"band group {self.name}: a series needs max_len >= 1")

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape by kind: image ``(bands, size, size)``, vector ``(bands,)``.

        A series gives its largest allowed shape ``(max_len, bands, size, size)``.
        """
        if self.kind == "vector":
            return (len(self.bands),)
        if self.kind == "series":
            return (self.max_len, len(self.bands), self.size, self.size)
        return (len(self.bands), self.size, self.size)

    def check_shape(self, arr: np.ndarray) -> str | None:
        """Why ``arr`` does not fit this group, or ``None`` when it does."""
        if self.kind == "series":
            ok = (arr.ndim == 4 and 1 <= arr.shape[0] <= self.max_len
                  and arr.shape[1:] == self.shape[1:])
            want = f"(1..{self.max_len}, {len(self.bands)}, {self.size}, {self.size})"
        else:
            ok = arr.shape == self.shape
            want = str(self.shape)
        return None if ok else f"shape {arr.shape}, expected {want}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the manifest)."""
        out: dict[str, Any] = {
            "bands": list(self.bands),
            "size": self.size,
            "dtype": self.dtype,
            "optional": self.optional,
            "kind": self.kind,
        }
        if self.kind == "series":
            out["max_len"] = self.max_len
        return out


GROUP_KINDS = ("image", "series", "vector")
TASKS = ("multilabel", "multiclass", "binary", "segmentation", "regression")


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality (``s2``, ``s1``, ...) made of one or more band groups."""

    name: str
    groups: tuple[BandGroup, ...]

    @property
    def bands(self) -> tuple[str, ...]:
        """All band names of all groups, in channel order."""
        return tuple(b for g in self.groups for b in g.bands)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds: modalities, task, classes."""

    name: str
    task: str
    """``multilabel`` (multi-hot), ``multiclass`` (one class per sample, stored one-hot),
    ``binary`` (several independent yes/no heads, one per class name), ``segmentation``
    (a class-index mask per sample) or ``regression`` (one float per target; ``classes``
    names the targets)."""
    classes: tuple[str, ...]
    modalities: tuple[ModalitySpec, ...]
    synthetic: bool = False
    meta_keys: tuple[str, ...] = ()
    """Keys of ``Sample.meta`` stored as ``meta_<key>`` string columns."""
    label_size: int = 0
    """Segmentation only: side of the ``(size, size)`` label mask."""
    exclude_from_mean: tuple[str, ...] = ()
    """Classes left out of averaged metrics (FLAIR-2's ``other`` is not in its mIoU)."""
    optional_modalities: tuple[str, ...] = ()
    """Modalities a sample may lack. Shards then carry a ``present_<modality>`` uint8 column
    (1 = the sample has it); an absent modality is stored as zeros, left out of the band
    statistics, and reaches the model as zeros plus its presence bit."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name}: task {self.task!r} is not one of "
                             + ", ".join(TASKS))
        if self.task == "segmentation" and self.label_size < 1:
            raise ValueError(f"dataset {self.name}: segmentation needs label_size >= 1")
        unknown = set(self.exclude_from_mean) - set(self.classes)
        if unknown:
            raise ValueError(f"dataset {self.name}: exclude_from_mean names unknown classes "
                             f"{sorted(unknown)}")

    @property
    def label_info(self) -> dict[str, Any]:
        """What the manifest records about labels beyond the class list."""
        out: dict[str, Any] = {"exclude_from_mean": list(self.exclude_from_mean)}
        if self.task == "segmentation":
            out["size"] = self.label_size
        return out

    def modality(self, name: str) -> ModalitySpec:
        """The modality called ``name`` (KeyError naming the known ones otherwise)."""
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} has no modality {name!r}; it has "
                       + ", ".join(m.name for m in self.modalities))

    @property
    def groups(self) -> tuple[BandGroup, ...]:
        """Every band group of every modality."""
        return tuple(g for m in self.modalities for g in m.groups)


class Reject(TypedDict):
    """A sample left out of the shards: the file or folder at fault and why."""

    path: str
    reason: str


class GeoRef(TypedDict):
    """The grid of a georeferenced sample's main raster (what covariate layers are warped onto)."""

    crs: str
    """WKT of the raster's CRS."""
    transform: list[float]
    """Affine ``[a, b, c, d, e, f]`` (rasterio/affine order): ``x = a*col + b*row + c``,
    ``y = d*col + e*row + f``."""
    width: int
    height: int


class Sample(TypedDict):
    """One decoded sample as a source's ``read`` returns it."""

    patch_id: str
    split: str
    label: np.ndarray
    """Classification: ``uint8`` vector of length ``len(spec.classes)`` (multi-hot / one-hot /
    one 0-1 per binary head). Regression: ``float32`` vector, one finite value per target.
    Segmentation: ``(label_size, label_size)`` uint8 class indices."""
    arrays: dict[str, np.ndarray]
    """Band-group name -> array in the group's native dtype (see :class:`BandGroup` shapes);
    a series group ``g`` also has ``"g_dates"``: ``(T,)`` day of year of each date."""
    meta: dict[str, str]
    """Extra string fields stored as ``meta_<key>`` columns."""
    geo: NotRequired[GeoRef]
    """Georeferenced readers: the main raster's grid (see :mod:`rsray.data.covariates`);
    prepare does not store it."""
    present: NotRequired[dict[str, bool]]
    """Datasets with ``optional_modalities``: whether the sample has each of them."""


@dataclass
class Discovery:
    """What a source found on disk before reading any raster."""

    items: list[dict[str, Any]]
    """JSON-serialisable descriptions of readable-looking samples; each has ``patch_id``
    and ``split``. They are sent to Ray tasks, which call ``Source.read`` on them. An item may
    carry ``"groups": {"country": ..., "tile": ..., "domain": ..., "lat": ...}`` (whatever the
    source knows cheaply); ``rsray prepare --holdout`` uses them for out-of-distribution
    splits."""
    rejects: list[Reject] = field(default_factory=list)
    """Samples rejected while pairing (e.g. S1 without S2), with path and reason."""
    info: dict[str, Any] = field(default_factory=dict)
    """How the split was made, exclusion counts, ...; copied into the manifest."""


class Source(Protocol):
    """A raw dataset reader. ``discover`` runs on the driver, ``read`` inside Ray tasks."""

    spec: DatasetSpec

    def discover(self) -> Discovery:
        """List, pair and split the samples (cheap: folder listings and small json files)."""
        ...

    def read(self, item: dict[str, Any]) -> Sample:
        """Read and validate one sample; raise :class:`~rsray.errors.PatchError` if unusable."""
        ...


def encode_array(arr: np.ndarray, dtype: str) -> bytes:
    """C-order bytes of ``arr`` cast to ``dtype`` (for a binary shard column)."""
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype)).tobytes()


def decode_array(buf: bytes, shape: tuple[int, ...] | list[int], dtype: str) -> np.ndarray:
    """Inverse of :func:`encode_array` (a read-only view on ``buf``)."""
    return np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(tuple(shape))


def group_nbytes(group: BandGroup) -> int:
    """Bytes of one sample of an image or vector group in its stored dtype."""
    return int(np.prod(group.shape)) * np.dtype(group.dtype).itemsize


def group_arrow_type(group: BandGroup) -> pa.DataType:
    """Arrow type of a band-group column: fixed-size binary unless the group is a series.

    Fixed-size binary keeps the rows of a batch back to back in one data buffer with no
    offsets, so :func:`rsray.data.decode.decode_raw` views it as ``(N, *shape)`` without
    copying; Parquet stores it as ``FIXED_LEN_BYTE_ARRAY`` (no length prefix per value).
    """
    return pa.binary() if group.kind == "series" else pa.binary(group_nbytes(group))


def encode_column(arrays: list[np.ndarray], dtype: str, nbytes: int) -> pa.Array:
    """One ``fixed_size_binary(nbytes)`` column from same-shape arrays, copied once."""
    flat = np.concatenate([np.ascontiguousarray(a, dtype=np.dtype(dtype)).reshape(-1)
                           for a in arrays]) if arrays else np.empty(0, np.dtype(dtype))
    data = pa.py_buffer(flat.view(np.uint8))
    if data.size != nbytes * len(arrays):
        raise ValueError(f"{data.size} bytes for {len(arrays)} rows of {nbytes} bytes")
    return pa.Array.from_buffers(pa.binary(nbytes), len(arrays), [None, data])
