"""The covariate flags of every ``rsray prepare <dataset>`` and the wrapper they build.

``--covariate NAME=PATH[:RESAMPLING]``, ``--covariate-opt NAME.KEY=VALUE``, ``--indices`` and
friends become :class:`~rsray.data.sources.covariates.layer.CovariateLayer` objects and a
:class:`~rsray.data.sources.covariates.reader.WithCovariates` around the dataset's source.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rasterio.enums import Resampling

from rsray.data.schema import Source
from rsray.data.sources.covariates.layer import DEFAULT_INDEX_BANDS, DTYPES, INDICES, CovariateLayer
from rsray.data.sources.covariates.reader import WithCovariates
from rsray.errors import ConfigError

__all__ = ["add_covariate_args", "layers_from_args", "wrap_from_args"]


_OPTION_TYPES: dict[str, Any] = {
    "nodata": float, "band": int, "modality": str, "max_missing": float, "fill": float,
    "size": int,
    "categories": lambda s: tuple(int(float(c)) for c in s.split(",") if c.strip()),
}


def add_covariate_args(p: argparse.ArgumentParser) -> None:
    """The covariate flags of every ``rsray prepare <dataset>``."""
    g = p.add_argument_group(
        "geographic covariates",
        "GeoTIFF layers warped onto each patch (needs a reader that gives sample['geo']) and "
        "spectral indices, stored as extra modalities")
    g.add_argument("--covariate", action="append", default=[], metavar="NAME=PATH[:RESAMPLING]",
                   help="add a layer as modality NAME (repeatable); PATH local or s3://; "
                        "RESAMPLING bilinear (default, continuous) or nearest (categorical), "
                        "or any rasterio Resampling name, e.g. dem=/data/dem.tif:bilinear")
    g.add_argument("--covariate-opt", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="per-layer option (repeatable): nodata, band, modality (group layers), "
                        "categories (e.g. landcover.categories=10,20,30: one-hot channels), "
                        "max_missing (share filled instead of rejected), fill, size")
    g.add_argument("--indices", default="", metavar="LIST",
                   help="spectral indices as modality 'indices': " + ",".join(INDICES))
    g.add_argument("--indices-from", default="s2", metavar="MODALITY",
                   help="image modality whose bands the indices use (default s2)")
    g.add_argument("--indices-bands", default="", metavar="ROLE=BAND,...",
                   help="band of each role if not Sentinel-2 names, e.g. red=R,nir=NIR,green=G")
    g.add_argument("--covariate-dtype", choices=DTYPES, default="float32",
                   help="stored dtype of covariate and index modalities")
    t = p.add_argument_group(
        "regression targets", "replace the dataset's labels by continuous per-patch targets "
        "(task 'regression', see rsray/data/sources/covariates/targets.py)")
    t.add_argument("--targets", default="", metavar="TABLE.csv",
                   help="CSV with a patch_id column and one column per target")
    t.add_argument("--target-columns", default="", metavar="LIST",
                   help="target columns to use, in order (default: all but patch_id)")


def _parse_covariate(text: str) -> tuple[str, str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ConfigError(f"--covariate {text!r}: expected NAME=PATH[:RESAMPLING], e.g. "
                          "dem=/data/dem.tif:bilinear")
    path, resampling = rest.strip(), "bilinear"
    head, colon, tail = path.rpartition(":")
    if colon and tail in Resampling.__members__:
        path, resampling = head, tail
    return name.strip(), path, resampling


def layers_from_args(covariates: Sequence[str], options: Sequence[str]) -> list[CovariateLayer]:
    """:class:`CovariateLayer` objects from ``--covariate`` and ``--covariate-opt`` values.

    Raises:
        ConfigError: a malformed flag, an option for an unknown layer or an unknown option.
    """
    parsed = [_parse_covariate(c) for c in covariates]
    names = [n for n, _, _ in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"--covariate: layer names repeat: {names}")
    opts: dict[str, dict[str, Any]] = {n: {} for n in names}
    for text in options:
        key, sep, value = text.partition("=")
        name, dot, opt = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--covariate-opt {text!r}: expected NAME.KEY=VALUE, e.g. "
                              "dem.nodata=-32768")
        if name not in opts:
            raise ConfigError(f"--covariate-opt {text!r}: no --covariate named {name!r} "
                              f"(layers: {', '.join(names) or 'none'})")
        if opt not in _OPTION_TYPES:
            raise ConfigError(f"--covariate-opt {text!r}: unknown option {opt!r}; options: "
                              + ", ".join(_OPTION_TYPES))
        try:
            opts[name][opt] = _OPTION_TYPES[opt](value.strip())
        except ValueError:
            raise ConfigError(f"--covariate-opt {text!r}: {value!r} is not a valid {opt}") from None
    return [CovariateLayer(name=n, path=p, resampling=r, **opts[n]) for n, p, r in parsed]


def wrap_from_args(source: Source, args: argparse.Namespace) -> Source:
    """``source`` wrapped in :class:`WithCovariates` when covariate flags were given.

    With ``--targets TABLE.csv`` it is first wrapped in
    :class:`~rsray.data.sources.covariates.targets.WithTargets` (a regression dataset).
    """
    covariates = list(getattr(args, "covariate", None) or [])
    options = list(getattr(args, "covariate_opt", None) or [])
    indices = [i.strip() for i in (getattr(args, "indices", "") or "").split(",") if i.strip()]
    if options and not covariates:
        raise ConfigError("--covariate-opt given without any --covariate")
    table = getattr(args, "targets", "") or ""
    if table:
        from rsray.data.sources.covariates.targets import WithTargets

        cols = [c.strip() for c in (getattr(args, "target_columns", "") or "").split(",")]
        source = WithTargets(source, table, [c for c in cols if c])
    elif getattr(args, "target_columns", ""):
        raise ConfigError("--target-columns given without --targets")
    if not covariates and not indices:
        return source
    roles: dict[str, str] = {}
    for pair in (getattr(args, "indices_bands", "") or "").split(","):
        if pair.strip():
            role, sep, band = pair.partition("=")
            if not sep or role.strip() not in DEFAULT_INDEX_BANDS:
                raise ConfigError(f"--indices-bands {pair!r}: expected ROLE=BAND with ROLE one "
                                  "of " + ", ".join(DEFAULT_INDEX_BANDS))
            roles[role.strip()] = band.strip()
    return WithCovariates(source, layers_from_args(covariates, options), indices,
                          dtype=getattr(args, "covariate_dtype", "float32"),
                          index_modality=getattr(args, "indices_from", "s2") or "s2",
                          index_bands=roles)
