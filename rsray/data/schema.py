"""How a dataset describes its modalities, and the contract between sources, shards and pipeline.

A *source* (one file per dataset under :mod:`rsray.data.sources`) knows the raw on-disk format.
It describes its data with a :class:`DatasetSpec`: modalities made of *band groups*, each group
being bands stored together because they share a resolution and a dtype (Sentinel-2's 10 m,
20 m and 60 m bands are three groups of modality ``s2``).

Shards store one row per sample with these columns:

* ``patch_id`` (string), ``split`` (string), ``label`` (list<uint8>, multi-hot);
* per band group ``<group>`` (binary: the C-order bytes of a ``(bands, size, size)`` array in
  the group's stored dtype) and ``<group>_shape`` (list<int32>);
* source-specific string columns ``meta_<key>`` (e.g. ``meta_s1_patch``).

The pipeline decodes groups, resamples them to one size and concatenates the groups of a
modality in spec order into one ``(C, H, W)`` float32 tensor keyed by the modality name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np


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

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(bands, size, size)``."""
        return (len(self.bands), self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the manifest)."""
        return {
            "bands": list(self.bands),
            "size": self.size,
            "dtype": self.dtype,
            "optional": self.optional,
        }


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
    """``multilabel`` (multi-hot labels); later ``multiclass``, ``binary``, ``segmentation``."""
    classes: tuple[str, ...]
    modalities: tuple[ModalitySpec, ...]
    synthetic: bool = False
    meta_keys: tuple[str, ...] = ()
    """Keys of ``Sample.meta`` stored as ``meta_<key>`` string columns."""

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


class Sample(TypedDict):
    """One decoded sample as a source's ``read`` returns it."""

    patch_id: str
    split: str
    label: np.ndarray
    """Multi-hot ``uint8`` vector of length ``len(spec.classes)``."""
    arrays: dict[str, np.ndarray]
    """Band-group name -> ``(bands, size, size)`` array in the group's native dtype."""
    meta: dict[str, str]
    """Extra string fields stored as ``meta_<key>`` columns."""


@dataclass
class Discovery:
    """What a source found on disk before reading any raster."""

    items: list[dict[str, Any]]
    """JSON-serialisable descriptions of readable-looking samples; each has ``patch_id``
    and ``split``. They are sent to Ray tasks, which call ``Source.read`` on them."""
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
