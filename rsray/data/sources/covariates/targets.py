"""Continuous per-patch targets from a CSV table: any source becomes a regression dataset.

:class:`WithTargets` wraps a :class:`~rsray.data.schema.Source` and replaces its labels with one
float per target read from a table (``rsray prepare <dataset> --targets TABLE.csv``), the way
SatML regression benchmarks attach a measured quantity (income, forest cover, air temperature,
...) to each image patch. The spec's task becomes ``regression`` and its ``classes`` the target
names (the table's columns other than ``patch_id``, or those asked for), so the model's
``num_classes`` is the number of targets.

The table is CSV with a header: ``patch_id`` and one column per target, one row per patch::

    patch_id,lst,greenness
    S2A_MSIL2A_20170614T101031_13_50,14.82,41.7

Validation: a missing table, or one without a ``patch_id`` column or without an asked-for
target column, stops ``discover`` with an error naming the file. Per patch (listed as a reject
naming the table and the line): no row for a discovered patch, a value that is not a finite
number, or a second row for the same patch. Rows of patches the source did not discover are
counted in the manifest (``info.targets.unused_rows``), not rejected.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsray.data.schema import DatasetSpec, Discovery, Reject, Sample, Source
from rsray.errors import DatasetNotFoundError, RsrayError

__all__ = ["ID_COLUMN", "WithTargets", "read_targets_table"]

ID_COLUMN = "patch_id"


def read_targets_table(path: str | Path, columns: Sequence[str] = ()
                       ) -> tuple[list[str], dict[str, list[float]], list[Reject]]:
    """``(target names, patch_id -> values, rejects)`` of a targets CSV.

    Raises:
        DatasetNotFoundError: the file does not exist.
        RsrayError: no header, no ``patch_id`` column, an asked-for column is missing, or no
            target column at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: targets table not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if ID_COLUMN not in header:
            raise RsrayError(f"{path}: the targets table needs a {ID_COLUMN!r} column in its "
                             f"header (found {header or 'an empty file'})")
        names = list(columns) or [h for h in header if h != ID_COLUMN]
        missing = [c for c in names if c not in header]
        if missing or not names:
            raise RsrayError(f"{path}: target column(s) {missing or '(none)'} not in the header "
                             f"{header}")
        idx = [header.index(c) for c in names]
        pid_i = header.index(ID_COLUMN)
        values: dict[str, list[float]] = {}
        rejects: list[Reject] = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                rejects.append({"path": str(path), "reason": f"line {line}: {len(row)} fields, "
                                f"the header has {len(header)}"})
                continue
            pid = row[pid_i].strip()
            bad = []
            vals = []
            for name, i in zip(names, idx, strict=True):
                try:
                    v = float(row[i])
                except ValueError:
                    v = math.nan
                if not math.isfinite(v):
                    bad.append(f"{name}={row[i].strip()!r}")
                vals.append(v)
            if bad:
                rejects.append({"path": str(path), "reason": f"line {line}: patch {pid}: target "
                                f"{', '.join(bad)} is not a finite number"})
                values[pid] = []  # known but unusable: not reported again as "no row"
            elif pid in values:
                rejects.append({"path": str(path), "reason": f"line {line}: patch {pid}: a "
                                "second row for this patch"})
                values[pid] = []
            else:
                values[pid] = vals
    return names, values, rejects


class WithTargets:
    """``source`` with its labels replaced by per-patch continuous targets from a CSV table.

    Args:
        source: any source (its own labels are dropped).
        table: path of the targets CSV (see the module docstring).
        columns: target columns to use, in this order; empty = every column but ``patch_id``.
        name: the dataset's name in the manifest; empty = the inner source's.
    """

    def __init__(self, source: Source, table: str | Path, columns: Sequence[str] = (),
                 name: str = "") -> None:
        self.source = source
        self.name = name
        self.table = str(table)
        self.columns = tuple(columns)
        self._names: tuple[str, ...] = self.columns

    def __repr__(self) -> str:
        """Show the wrapped source and the table."""
        return f"WithTargets({self.source!r}, table={self.table!r})"

    @property
    def spec(self) -> DatasetSpec:
        """The inner spec as a ``regression`` task whose classes are the target names."""
        inner = self.source.spec
        names = self._names or ("target",)
        return dataclasses.replace(inner, name=self.name or inner.name, task="regression",
                                   classes=tuple(names),
                                   label_size=0, exclude_from_mean=())

    def discover(self) -> Discovery:
        """The source's discovery, each item given its targets; patches without them rejected.

        Raises:
            DatasetNotFoundError: the table does not exist.
            RsrayError: the table's header lacks ``patch_id`` or a target column.
        """
        names, values, rejects = read_targets_table(self.table, self.columns)
        self._names = tuple(names)
        disc = self.source.discover()
        items = []
        seen = set()
        for item in disc.items:
            pid = str(item["patch_id"])
            seen.add(pid)
            vals = values.get(pid)
            if vals is None:
                rejects.append({"path": self.table, "reason": f"no target row for patch {pid}"})
            elif vals:
                items.append({**item, "targets": vals})
        unused = sum(1 for p in values if p not in seen)
        disc.items = items
        disc.rejects = [*disc.rejects, *rejects]
        disc.info = {**disc.info, "targets": {"table": self.table, "names": names,
                                              "rows": len(values), "unused_rows": unused}}
        return disc

    def read(self, item: Mapping[str, Any]) -> Sample:
        """The inner sample with ``label`` = the item's targets (float32, one per target)."""
        sample = self.source.read(item)
        return {**sample, "label": np.asarray(item["targets"], dtype=np.float32)}
