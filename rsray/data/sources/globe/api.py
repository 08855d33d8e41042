"""Client for the GLOBE API: land-cover records by date range (and bounding box) -> ``lc.csv``.

The endpoint (GLOBE Observer's ``download.py``; API docs at
https://api.globe.gov/search/swagger-ui.html)::

    GET https://api.globe.gov/search/v1/measurement/protocol/measureddate/
        ?protocols=land_covers&startdate=YYYY-MM-DD&enddate=YYYY-MM-DD&geojson=FALSE&sample=FALSE
    GET .../measureddate/lat/lon/?protocols=land_covers&startdate=..&enddate=..
        &minlat=..&maxlat=..&minlon=..&maxlon=..&geojson=FALSE&sample=FALSE

answers ``{"count": N, "message": "success", "results": [{<record>, "data": {...}}]}``.
Flattening ``data`` into the record gives the columns of GLOBE Observer's ``lc.csv`` export
(:data:`LC_COLUMNS`, after an unnamed index column), which
:class:`rsray.data.sources.globe.GlobeObserver` reads.

Large queries: ``chunk_days`` splits the date range into windows queried one after another;
``page_size`` adds the API's ``from``/``size`` paging parameters and fetches pages until one
comes back short. Records seen twice (same ``landcoversLandCoverId``) are kept once. Every
request goes through :class:`~rsray.data.sources._http.HttpFetcher` (timeout, bounded retries
with exponential backoff); a machine without internet access gets a :class:`GlobeApiError`
that says so.

Command line: ``python -m rsray.data.sources.globe.api --start 2021-01-01 --end 2021-01-31
--out lc.csv`` (or ``rsray prepare globe --download ...``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from rsray.data.sources._http import FetchError, HttpFetcher
from rsray.errors import ConfigError, RsrayError
from rsray.storage import atomic_write_bytes, get_fs

__all__ = [
    "API_ROOT",
    "DATA_FIELDS",
    "LC_COLUMNS",
    "TOP_LEVEL_FIELDS",
    "BBox",
    "DownloadResult",
    "GlobeApiClient",
    "GlobeApiError",
    "download_land_covers",
    "flatten_record",
    "parse_bbox",
    "write_lc_csv",
]

API_ROOT = "https://api.globe.gov/search/v1/measurement/protocol/measureddate/"
"""The measured-date search endpoint; ``lat/lon/`` below it filters by a bounding box."""
PROTOCOL = "land_covers"

TOP_LEVEL_FIELDS: tuple[str, ...] = (
    "protocol", "measuredDate", "createDate", "updateDate", "publishDate", "organizationId",
    "organizationName", "siteId", "siteName", "countryName", "countryCode", "latitude",
    "longitude", "elevation", "pid",
)
"""Fields of a result record outside ``data``, in the export's column order."""
DATA_FIELDS: tuple[str, ...] = (
    "landcoversDownwardPhotoUrl", "landcoversEastExtraData", "landcoversEastPhotoUrl",
    "landcoversMucCode", "landcoversUpwardPhotoUrl", "landcoversEastCaption",
    "landcoversWestClassifications", "landcoversNorthCaption", "landcoversNorthExtraData",
    "landcoversDataSource", "landcoversDryGround", "landcoversSouthClassifications",
    "landcoversWestCaption", "landcoversNorthPhotoUrl", "landcoversUpwardCaption",
    "landcoversDownwardExtraData", "landcoversEastClassifications", "landcoversMucDetails",
    "landcoversMeasuredAt", "landcoversDownwardCaption", "landcoversSouthPhotoUrl",
    "landcoversMuddy", "landcoversWestPhotoUrl", "landcoversStandingWater",
    "landcoversLeavesOnTrees", "landcoversUserid", "landcoversSouthExtraData",
    "landcoversSouthCaption", "landcoversRainingSnowing", "landcoversUpwardExtraData",
    "landcoversWestExtraData", "landcoversLandCoverId", "landcoversMucDescription",
    "landcoversSnowIce", "landcoversNorthClassifications", "landcoversFieldNotes",
    "landcoversMeasurementLatitude", "landcoversMeasurementElevation",
    "landcoversMeasurementLongitude",
)
"""The ``data`` fields of a land-cover record, in the export's column order."""
LC_COLUMNS: tuple[str, ...] = TOP_LEVEL_FIELDS + DATA_FIELDS
"""The 54 named columns of ``lc.csv`` (the file starts with an unnamed index column)."""


class GlobeApiError(RsrayError):
    """The GLOBE API could not be reached or answered something unusable."""


@dataclass(frozen=True)
class BBox:
    """A latitude/longitude box in degrees (``min <= max``)."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float

    def __post_init__(self) -> None:
        if not -90 <= self.min_lat <= self.max_lat <= 90:
            raise ConfigError(f"bbox: latitudes {self.min_lat}..{self.max_lat} must satisfy "
                              "-90 <= min_lat <= max_lat <= 90")
        if not -180 <= self.min_lon <= self.max_lon <= 180:
            raise ConfigError(f"bbox: longitudes {self.min_lon}..{self.max_lon} must satisfy "
                              "-180 <= min_lon <= max_lon <= 180")


def parse_bbox(text: str) -> BBox:
    """``"min_lat,max_lat,min_lon,max_lon"`` -> :class:`BBox` (ConfigError when malformed)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ConfigError(f"bbox: {text!r} is not four numbers min_lat,max_lat,min_lon,max_lon")
    return BBox(*values)


def _as_date(value: date | str, name: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a YYYY-MM-DD date") from None


def _windows(start: date, end: date, chunk_days: int | None) -> list[tuple[date, date]]:
    """Consecutive, non-overlapping inclusive date windows covering ``start..end``."""
    if not chunk_days:
        return [(start, end)]
    out, lo = [], start
    while lo <= end:
        hi = min(lo + timedelta(days=chunk_days - 1), end)
        out.append((lo, hi))
        lo = hi + timedelta(days=1)
    return out


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One API result -> one ``lc.csv`` row: the record's fields plus those of ``data``.

    Raises:
        GlobeApiError: the record is not an object or its ``data`` is not an object.
    """
    if not isinstance(record, Mapping):
        raise GlobeApiError(f"a result is a {type(record).__name__}, not a JSON object")
    data = record.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise GlobeApiError(f"record pid={record.get('pid')}: 'data' is a "
                            f"{type(data).__name__}, not a JSON object")
    row = {k: v for k, v in record.items() if k != "data"}
    for k, v in data.items():
        if k in row and row[k] != v:
            raise GlobeApiError(f"record pid={record.get('pid')}: field {k!r} is both in the "
                                "record and in its data, with different values")
        row[k] = v
    return row


@dataclass
class DownloadResult:
    """What :func:`download_land_covers` fetched and wrote."""

    path: str
    records: int
    requests: int
    windows: int
    duplicates: int = 0
    urls: list[str] = field(default_factory=list)


class GlobeApiClient:
    """Queries the GLOBE measured-date endpoint for one protocol.

    Args:
        api_root: the endpoint (:data:`API_ROOT`; tests point it at a local server).
        protocol: GLOBE protocol name (``land_covers``).
        fetcher: timeout and retry policy.
        page_size: records per page (``from``/``size`` parameters); ``None`` = one request per
            window, as GLOBE Observer's own downloader does.
        chunk_days: split the date range into windows of this many days (``None``: one).
        max_pages: safety limit of pages per window.
    """

    def __init__(
        self,
        api_root: str = API_ROOT,
        *,
        protocol: str = PROTOCOL,
        fetcher: HttpFetcher | None = None,
        page_size: int | None = None,
        chunk_days: int | None = None,
        max_pages: int = 10_000,
    ) -> None:
        if page_size is not None and page_size < 1:
            raise ConfigError(f"page_size: {page_size} must be >= 1")
        if chunk_days is not None and chunk_days < 1:
            raise ConfigError(f"chunk_days: {chunk_days} must be >= 1")
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self.protocol = protocol
        self.fetcher = fetcher or HttpFetcher(timeout=120.0, retries=3, backoff=2.0)
        self.page_size = page_size
        self.chunk_days = chunk_days
        self.max_pages = max_pages
        self.requests = 0
        self.urls: list[str] = []

    def query_url(self, start: date, end: date, bbox: BBox | None = None,
                  page: int | None = None) -> str:
        """The request URL of one window (and page)."""
        params: list[tuple[str, Any]] = [("protocols", self.protocol),
                                         ("startdate", start.isoformat()),
                                         ("enddate", end.isoformat())]
        root = self.api_root
        if bbox is not None:
            root += "lat/lon/"
            params += [("minlat", bbox.min_lat), ("maxlat", bbox.max_lat),
                       ("minlon", bbox.min_lon), ("maxlon", bbox.max_lon)]
        params += [("geojson", "FALSE"), ("sample", "FALSE")]
        if page is not None and self.page_size:
            params += [("from", page * self.page_size), ("size", self.page_size)]
        return root + "?" + urlencode(params)

    def _get_json(self, url: str) -> list[dict[str, Any]]:
        self.requests += 1
        self.urls.append(url)
        try:
            body = self.fetcher.get(url)
        except FetchError as exc:
            hint = ""
            if exc.status is None:
                hint = ("; this machine may have no internet access: download lc.csv where the "
                        "API is reachable (python -m rsray.data.sources.globe.api) and pass "
                        "--csv")
            raise GlobeApiError(f"GLOBE API request failed: {exc}{hint}") from None
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GlobeApiError(f"GLOBE API {url}: answer is not JSON ({exc}); it starts with "
                                f"{body[:120]!r}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise GlobeApiError(f"GLOBE API {url}: answer has no 'results' list (keys: "
                                f"{sorted(payload) if isinstance(payload, dict) else '-'})")
        message = payload.get("message", "success")
        if message != "success":
            raise GlobeApiError(f"GLOBE API {url}: message {message!r}")
        return payload["results"]

    def iter_records(self, start: date | str, end: date | str,
                     bbox: BBox | None = None) -> Iterator[dict[str, Any]]:
        """Raw result records of ``start..end`` (inclusive), window by window, page by page."""
        lo, hi = _as_date(start, "start"), _as_date(end, "end")
        if lo > hi:
            raise ConfigError(f"start {lo} is after end {hi}")
        for w_lo, w_hi in _windows(lo, hi, self.chunk_days):
            if not self.page_size:
                yield from self._get_json(self.query_url(w_lo, w_hi, bbox))
                continue
            first_ids: set[str] = set()
            for page in range(self.max_pages):
                results = self._get_json(self.query_url(w_lo, w_hi, bbox, page))
                if results:
                    head = json.dumps(results[0], sort_keys=True)
                    if head in first_ids:
                        raise GlobeApiError(
                            f"GLOBE API {self.api_root}: page {page} of {w_lo}..{w_hi} repeats an "
                            "earlier page (the endpoint ignores from/size?); rerun without "
                            "page_size")
                    first_ids.add(head)
                yield from results
                if len(results) < self.page_size:
                    break
            else:
                raise GlobeApiError(f"GLOBE API: more than {self.max_pages} pages for "
                                    f"{w_lo}..{w_hi}; use smaller chunk_days")

    def fetch_rows(self, start: date | str, end: date | str,
                   bbox: BBox | None = None) -> tuple[list[dict[str, Any]], int]:
        """Flattened rows, without duplicates, and the number of duplicates dropped."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        duplicates = 0
        for record in self.iter_records(start, end, bbox):
            row = flatten_record(record)
            key = row.get("landcoversLandCoverId")
            ident = f"id:{key}" if key is not None else json.dumps(row, sort_keys=True)
            if ident in seen:
                duplicates += 1
                continue
            seen.add(ident)
            rows.append(row)
        return rows, duplicates


def write_lc_csv(rows: Sequence[Mapping[str, Any]], out: str) -> None:
    """Write rows as GLOBE Observer's ``lc.csv`` (pandas' CSV with the unnamed index column).

    Columns: :data:`LC_COLUMNS` in that order, then any further fields sorted by name.
    ``None`` becomes an empty cell; integer columns with gaps are written as floats
    (``24905746.0``), booleans as ``True``/``False`` -- as the original export does.
    """
    import pandas as pd

    extra = sorted({k for r in rows for k in r} - set(LC_COLUMNS))
    frame = pd.DataFrame(list(rows), columns=[*LC_COLUMNS, *extra])
    buf = io.StringIO()
    frame.to_csv(buf)
    fs, path = get_fs(out)
    atomic_write_bytes(fs, path, buf.getvalue().encode("utf-8"))


def download_land_covers(
    out: str,
    start: date | str,
    end: date | str,
    *,
    bbox: BBox | None = None,
    client: GlobeApiClient | None = None,
) -> DownloadResult:
    """Query land-cover records of ``start..end`` (optionally inside ``bbox``) into ``out``.

    Raises:
        GlobeApiError: the API is unreachable (after retries) or answers something unusable.
        ConfigError: bad dates or box.
    """
    client = client or GlobeApiClient()
    rows, duplicates = client.fetch_rows(start, end, bbox)
    write_lc_csv(rows, out)
    lo, hi = _as_date(start, "start"), _as_date(end, "end")
    return DownloadResult(path=out, records=len(rows), requests=client.requests,
                          windows=len(_windows(lo, hi, client.chunk_days)),
                          duplicates=duplicates, urls=list(client.urls))


def add_download_args(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Flags of a GLOBE API download (``--start``, ``--end``, ``--bbox``, ...)."""
    p.add_argument(f"--{prefix}start", help="first measured date, YYYY-MM-DD")
    p.add_argument(f"--{prefix}end", help="last measured date, YYYY-MM-DD (inclusive)")
    p.add_argument(f"--{prefix}bbox", metavar="MINLAT,MAXLAT,MINLON,MAXLON",
                   help="only records inside this box")
    p.add_argument("--api-root", default=API_ROOT, help="GLOBE API measured-date endpoint")
    p.add_argument("--page-size", type=int, default=None,
                   help="page through results with the API's from/size parameters")
    p.add_argument("--chunk-days", type=int, default=None,
                   help="query the date range in windows of this many days")
    p.add_argument("--api-retries", type=int, default=3, help="retries per API request")
    p.add_argument("--api-timeout", type=float, default=120.0, help="seconds per API request")


def client_from_args(args: argparse.Namespace) -> GlobeApiClient:
    """A :class:`GlobeApiClient` from :func:`add_download_args` flags."""
    fetcher = HttpFetcher(timeout=args.api_timeout, retries=args.api_retries, backoff=2.0)
    return GlobeApiClient(args.api_root, fetcher=fetcher, page_size=args.page_size,
                          chunk_days=args.chunk_days)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rsray.data.sources.globe.api --start .. --end .. --out lc.csv``."""
    p = argparse.ArgumentParser(prog="python -m rsray.data.sources.globe.api",
                                description="Download GLOBE land-cover records to lc.csv")
    add_download_args(p)
    p.add_argument("--out", required=True, help="lc.csv to write (local path or s3://)")
    args = p.parse_args(argv)
    if not args.start or not args.end:
        p.error("--start and --end are required")
    try:
        bbox = parse_bbox(args.bbox) if args.bbox else None
        result = download_land_covers(args.out, args.start, args.end, bbox=bbox,
                                      client=client_from_args(args))
    except RsrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.records} land-cover records to {result.path} "
          f"({result.requests} request(s), {result.duplicates} duplicate(s) dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
