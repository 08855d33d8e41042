"""GLOBE Observer land cover (horizon photos + metadata): reader, synthetic twin, command line.

``rsray prepare globe --lc-csv ..`` and ``rsray synth globe``. The reader is in
:mod:`.reader`, the synthetic twin in :mod:`.synth`; :mod:`.api` downloads ``lc.csv``.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.globe.reader import GlobeObserver, decode_photo
from rsray.data.sources.globe.rows import winterness
from rsray.data.sources.globe.spec import (
    CLASSES,
    DEFAULT_CACHE,
    DIRECTIONS,
    FEATURES,
    LAYOUTS,
    MUC_LEVEL1,
    SYNTHETIC_ORGANIZATION,
    globe_spec,
    photo_rel_path,
)
from rsray.data.sources.globe.synth import (
    CORRUPTIONS,
    GlobeSynthInfo,
    describe_synthetic_rules,
    write_synthetic_globe,
)
from rsray.errors import ConfigError

__all__ = [
    "CLASSES",
    "DIRECTIONS",
    "FEATURES",
    "LAYOUTS",
    "MUC_LEVEL1",
    "SYNTHETIC_ORGANIZATION",
    "GlobeObserver",
    "GlobeSynthInfo",
    "decode_photo",
    "describe_synthetic_rules",
    "globe_spec",
    "photo_rel_path",
    "winterness",
    "write_synthetic_globe",
]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _add_prepare_args(p: Any) -> None:
    from rsray.data.sources.globe.api import add_download_args

    p.add_argument("--csv", required=True,
                   help="GLOBE Observer lc.csv (local or s3://); with --download, written there")
    p.add_argument("--photos-dir", default=None,
                   help="local/s3 mirror of data.globe.gov/system/photos; omit to fetch URLs")
    p.add_argument("--cache-dir", default=None,
                   help=f"cache of fetched photos (default {DEFAULT_CACHE})")
    p.add_argument("--photo-size", type=int, default=128, help="stored photo side (pixels)")
    p.add_argument("--min-photos", type=int, default=6,
                   help="fewest usable photos per record; missing ones become zero images")
    p.add_argument("--photo-layout", choices=LAYOUTS, default="directions",
                   help="one modality per direction, or one 18-channel 'photos' modality")
    p.add_argument("--photo-url-map", default=None, metavar="OLD=NEW",
                   help="rewrite a photo URL prefix before fetching (mirror/proxy)")
    p.add_argument("--photo-retries", type=int, default=3, help="retries per photo")
    p.add_argument("--photo-timeout", type=float, default=30.0, help="seconds per photo")
    p.add_argument("--split-by", choices=["site", "record"], default="site")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--split-fractions", default="0.7,0.15,0.15", metavar="TRAIN,VAL,TEST",
                   help="fractions of sites (or records) per split")
    p.add_argument("--exclude-feature", action="append", default=[], metavar="NAME",
                   help="leave a metadata feature out (repeatable)")
    p.add_argument("--download", action="store_true",
                   help="first download --start..--end from the GLOBE API into --csv")
    add_download_args(p)


def _source_from_args(args: Any) -> GlobeObserver:
    if args.download:
        from rsray.data.sources.globe.api import (
            client_from_args,
            download_land_covers,
            parse_bbox,
        )

        if not args.start or not args.end:
            raise ConfigError("--download needs --start and --end (YYYY-MM-DD)")
        bbox = parse_bbox(args.bbox) if args.bbox else None
        result = download_land_covers(args.csv, args.start, args.end, bbox=bbox,
                                      client=client_from_args(args))
        print(f"downloaded {result.records} land-cover records to {result.path} "
              f"({result.requests} API request(s))", flush=True)
    url_map = None
    if args.photo_url_map:
        old, sep, new = args.photo_url_map.partition("=")
        if not sep or not old or not new:
            raise ConfigError(f"--photo-url-map {args.photo_url_map!r}: expected OLD=NEW")
        url_map = (old, new)
    try:
        fractions = tuple(float(v) for v in args.split_fractions.split(","))
    except ValueError:
        raise ConfigError(f"--split-fractions {args.split_fractions!r}: expected three numbers "
                          "such as 0.7,0.15,0.15") from None
    if len(fractions) != 3:
        raise ConfigError(f"--split-fractions {args.split_fractions!r}: expected three numbers")
    return GlobeObserver(args.csv, photos_dir=args.photos_dir, cache_dir=args.cache_dir,
                         photo_size=args.photo_size, min_photos=args.min_photos,
                         layout=args.photo_layout, photo_url_map=url_map,
                         timeout=args.photo_timeout, retries=args.photo_retries,
                         split_by=args.split_by, split_seed=args.split_seed,
                         split_fractions=(fractions[0], fractions[1], fractions[2]),
                         exclude_features=args.exclude_feature)


register_dataset(DatasetEntry(
    name="globe",
    summary="GLOBE Observer land cover: six directional photos + metadata, snow/ice and "
            "leaves-on-trees binary heads",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_globe(out, n, seed=seed),
    synthetic_source=lambda raw: GlobeObserver(str(raw / "lc.csv"),
                                               photos_dir=str(raw / "photos")),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=(*DIRECTIONS, "metadata"),
    test_model="test_progressive_fusion",
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_synthetic_globe(
        out, n, seed=seed, corrupt=corrupt, progress=False),
))
