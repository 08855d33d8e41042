"""The spatial group of each sample: the unit a test-set bootstrap resamples.

Neighbouring patches of one Sentinel scene, one MGRS tile or one FLAIR-2 zone share their
acquisition, their season and their landscape, so their errors are correlated; a bootstrap
that resamples patches one by one treats them as independent and gives too narrow an
interval. The study's bootstrap therefore resamples *groups*. Each dataset's reader stores
what it knows about a sample's place in ``meta_<key>`` shard columns; this module says which
of them is the group, per dataset:

============== ===================== ================================================
dataset        shard column(s)       group
============== ===================== ================================================
sen12ms        ``meta_scene``        the scene (``<season>_<scene number>``)
bigearthnet    ``meta_s1_patch``     the MGRS tile, read from the S1 patch name
bigearthnet_v2 ``meta_tile``         the MGRS tile of the S2 patch id
flair2         ``meta_domain`` +     the zone within its domain (``D004_2021/Z8_NF``):
               ``meta_zone``         one Sentinel-2 super-area, one aerial campaign
globe          ``meta_site_id``      the observation site
============== ===================== ================================================

A covariate-extended shard set keeps its dataset's name and columns, so the same rule
applies. A shard set of another dataset uses the first present of ``meta_group`` (the first
group a dataset described in YAML declares, ``rsray prepare files``), ``meta_tile``,
``meta_scene``, ``meta_zone``, ``meta_region``, ``meta_site_id``; with none, samples have
no group and the bootstrap falls back to single samples (and says so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GROUP_COLUMN = "group"
"""Name of the group column in a predictions table."""


def _text(values: Any) -> list[str]:
    return ["" if v is None else (v.decode() if isinstance(v, bytes) else str(v))
            for v in (values.to_pylist() if hasattr(values, "to_pylist") else list(values))]


def _tile_of_s1(name: str) -> str:
    """MGRS tile of a BigEarthNet v1 S1 patch name (``S1A_IW_GRDH_1SDV_<t>_<tile>_<c>_<r>``)."""
    parts = name.split("_")
    return parts[-3] if len(parts) >= 7 else ""


@dataclass(frozen=True)
class GroupRule:
    """How a dataset's group is read from its shard rows."""

    columns: tuple[str, ...]
    """Shard columns the group is built from."""
    what: str
    """What a group is, one noun (for reports: "12 MGRS tiles")."""
    build: Callable[[list[list[str]]], list[str]] | None = None
    """Columns' values -> group per row; default: the first column as is."""

    def values(self, batch: Mapping[str, Any]) -> np.ndarray:
        """The group of every row of ``batch`` (an object array of strings; ``""``: none)."""
        cols = [_text(batch[c]) for c in self.columns]
        out = self.build(cols) if self.build else cols[0]
        return np.asarray(out, dtype=object)


GROUP_RULES: dict[str, GroupRule] = {
    "sen12ms": GroupRule(("meta_scene",), "scene"),
    "bigearthnet": GroupRule(("meta_s1_patch",), "MGRS tile",
                             lambda c: [_tile_of_s1(s) for s in c[0]]),
    "bigearthnet_v2": GroupRule(("meta_tile",), "MGRS tile"),
    "flair2": GroupRule(("meta_domain", "meta_zone"), "zone",
                        lambda c: [f"{d}/{z}" if z else "" for d, z in zip(*c, strict=True)]),
    "globe": GroupRule(("meta_site_id",), "site"),
}
"""Dataset name (the manifest's ``dataset``) -> its group rule."""
FALLBACK_COLUMNS = ("meta_group", "meta_tile", "meta_scene", "meta_zone", "meta_region",
                    "meta_site_id")
"""Columns tried, in order, for a dataset without a rule."""


def group_rule(dataset: str, columns: Sequence[str]) -> GroupRule | None:
    """The group rule of a shard set with these ``columns``, or ``None`` when it has none."""
    have = set(columns)
    rule = GROUP_RULES.get(dataset)
    if rule is not None and set(rule.columns) <= have:
        return rule
    for col in FALLBACK_COLUMNS:
        if col in have:
            return GroupRule((col,), col.removeprefix("meta_").replace("_", " "))
    return None


def shard_columns(paths: Sequence[str], filesystem: Any = None) -> list[str]:
    """Column names of the first shard of ``paths`` (its Parquet footer only)."""
    import pyarrow.parquet as pq

    if not paths:
        return []
    return list(pq.read_schema(paths[0], filesystem=filesystem).names)


__all__ = ["FALLBACK_COLUMNS", "GROUP_COLUMN", "GROUP_RULES", "GroupRule", "group_rule",
           "shard_columns"]
