"""GLOBE Observer source: real export, synthetic twin, bad inputs, photo fetching, API client.

HTTP is tested against a local server (``http.server`` on 127.0.0.1) that answers like the
GLOBE API (recorded responses built from the rows of the real ``lc.csv``, or of the synthetic
twin when the real sample is absent) and serves JPEG photos; nothing reaches the internet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from rsray.data.sources._http import FetchError, HttpFetcher, UrlCache
from rsray.data.sources.globe import (
    CLASSES,
    DIRECTIONS,
    FEATURES,
    SYNTHETIC_ORGANIZATION,
    GlobeObserver,
    decode_photo,
    describe_synthetic_rules,
    globe_spec,
    photo_rel_path,
    winterness,
    write_synthetic_globe,
)
from rsray.data.sources.globe.api import (
    DATA_FIELDS,
    LC_COLUMNS,
    TOP_LEVEL_FIELDS,
    BBox,
    GlobeApiClient,
    GlobeApiError,
    download_land_covers,
    flatten_record,
    parse_bbox,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

INT_FIELDS = {"organizationId", "siteId", "pid", "landcoversLandCoverId", "landcoversUserid"}
FLOAT_FIELDS = {"latitude", "longitude", "elevation", "landcoversMeasurementLatitude",
                "landcoversMeasurementLongitude", "landcoversMeasurementElevation"}
BOOL_FIELDS = {"landcoversSnowIce", "landcoversLeavesOnTrees", "landcoversRainingSnowing",
               "landcoversDryGround", "landcoversMuddy", "landcoversStandingWater"}
GLOBE_PHOTOS = "https://data.globe.gov"
REAL_LC = Path(os.environ.get("RSRAY_REAL_DATA", Path(__file__).resolve().parents[2]
                              / "shared/data/real")) / "globe-observer/lc.csv"
"""The real export sample; the API tests serve it when present, else the synthetic twin."""


def _jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------- a fake GLOBE server


def _api_record(row: dict[str, str]) -> dict[str, Any]:
    """One lc.csv row -> the API's JSON shape (types restored, ``data`` nested)."""

    def value(key: str, text: str) -> Any:
        if text == "":
            return None
        if key in INT_FIELDS:
            return int(float(text))
        if key in FLOAT_FIELDS:
            return float(text)
        if key in BOOL_FIELDS:
            return text == "True"
        return text

    record = {k: value(k, row[k]) for k in TOP_LEVEL_FIELDS}
    record["data"] = {k: value(k, row[k]) for k in DATA_FIELDS}
    return record


class FakeGlobe:
    """GLOBE API + photo server on 127.0.0.1 with request log and failure injection."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.requests: list[str] = []
        self.fail: dict[str, int] = {}
        """Path prefix -> how many more requests under it answer 503."""
        self.missing: set[str] = set()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for p in self.requests if p.startswith(prefix))

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        with self.lock:
            self.requests.append(h.path)
            for prefix, left in self.fail.items():
                if parsed.path.startswith(prefix) and left > 0:
                    self.fail[prefix] = left - 1
                    self._send(h, 503, b"busy", "text/plain")
                    return
        if parsed.path.startswith("/system/photos/"):
            if parsed.path in self.missing:
                self._send(h, 404, b"not found", "text/plain")
                return
            seed = int.from_bytes(hashlib.sha256(parsed.path.encode()).digest()[:4], "big")
            self._send(h, 200, _jpeg(seed), "image/jpeg")
            return
        if parsed.path.startswith("/search/v1/measurement/protocol/measureddate/"):
            q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            out = [r for r in self.records
                   if q["startdate"] <= r["measuredDate"] <= q["enddate"]]
            if parsed.path.endswith("/lat/lon/"):
                out = [r for r in out
                       if float(q["minlat"]) <= r["latitude"] <= float(q["maxlat"])
                       and float(q["minlon"]) <= r["longitude"] <= float(q["maxlon"])]
            if "from" in q:
                start, size = int(q["from"]), int(q["size"])
                out = out[start:start + size]
            body = json.dumps({"count": len(out), "message": "success", "results": out})
            self._send(h, 200, body.encode(), "application/json")
            return
        self._send(h, 404, b"no such endpoint", "text/plain")

    def __enter__(self) -> FakeGlobe:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("globe_synth")
    return write_synthetic_globe(root, 48, seed=3, photo_px=(48, 36), progress=False)


@pytest.fixture(scope="module")
def lc_rows(synth) -> list[dict[str, str]]:
    """Rows the fake API serves: the real lc.csv when present, else the synthetic twin."""
    return _read_csv(REAL_LC if REAL_LC.is_file() else Path(synth.csv))


@pytest.fixture
def fake_globe(lc_rows) -> Iterator[FakeGlobe]:
    records = [_api_record(r) for r in lc_rows]
    with FakeGlobe(records) as fake:
        for r in fake.records:  # recorded responses whose photos the local server serves
            for k, v in r["data"].items():
                if k.endswith("PhotoUrl") and isinstance(v, str) and v.startswith("http"):
                    r["data"][k] = v.replace(GLOBE_PHOTOS, fake.url)
        yield fake


def _fast(**kw: Any) -> dict[str, Any]:
    return {"retries": 2, "backoff": 0.001, "timeout": 5.0, **kw}


# --------------------------------------------------------------------------------- spec, args


def test_spec_layouts_and_features():
    spec = globe_spec(64)
    assert spec.task == "binary" and spec.classes == CLASSES == ("snow_ice", "leaves_on_trees")
    assert [m.name for m in spec.modalities] == [*DIRECTIONS, "metadata"]
    assert spec.modality("north").bands == ("north_R", "north_G", "north_B")
    meta = spec.modality("metadata").groups[0]
    assert meta.kind == "vector" and meta.shape == (len(FEATURES),) and meta.dtype == "float32"
    stacked = globe_spec(32, layout="stacked")
    assert [m.name for m in stacked.modalities] == ["photos", "metadata"]
    assert len(stacked.modality("photos").bands) == 18
    assert [g.name for g in stacked.groups] == [*DIRECTIONS, "metadata"]
    assert len(set(FEATURES)) == len(FEATURES) == 48
    with pytest.raises(ConfigError, match="layout"):
        globe_spec(layout="mosaic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="photo_size"):
        globe_spec(4)


def test_constructor_checks(tmp_path: Path):
    csv_path = str(tmp_path / "lc.csv")
    with pytest.raises(ConfigError, match="min_photos"):
        GlobeObserver(csv_path, min_photos=0)
    with pytest.raises(ConfigError, match=r"unknown feature.*'altitude'"):
        GlobeObserver(csv_path, exclude_features=["altitude"])
    with pytest.raises(ConfigError, match="split_by"):
        GlobeObserver(csv_path, split_by="country")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="split_fractions"):
        GlobeObserver(csv_path, split_fractions=(0.5, 0.5, 0.5))
    src = GlobeObserver(csv_path, exclude_features=["raining_snowing", "muc_urban"])
    assert len(src.spec.modality("metadata").bands) == len(FEATURES) - 2
    with pytest.raises(DatasetNotFoundError, match=r"lc\.csv: GLOBE land-cover CSV not found"):
        src.discover()


def test_photo_paths_and_decoding():
    url = "https://data.globe.gov/system/photos/2021/01/22/2095382/original.jpg"
    assert photo_rel_path(url) == "2021/01/22/2095382/original.jpg"
    assert photo_rel_path("http://mirror:8000/a/b.jpg") == "a/b.jpg"
    assert photo_rel_path("2021/01/x.jpg") == "2021/01/x.jpg"
    # a wide photo is centre-cropped: the red middle survives, the blue sides do not
    from PIL import Image

    arr = np.zeros((40, 120, 3), np.uint8)
    arr[:, :40, 2] = arr[:, 80:, 2] = 255
    arr[:, 40:80, 0] = 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out = decode_photo(buf.getvalue(), 16)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    assert out[0].min() > 200 and out[2].max() < 50
    with pytest.raises(ValueError, match="empty file"):
        decode_photo(b"", 16)
    with pytest.raises(ValueError, match="not a readable image"):
        decode_photo(_jpeg(1)[:200], 16)


def test_winterness_flips_with_the_hemisphere():
    assert winterness(15, 50.0) == pytest.approx(1.0)
    assert winterness(15, -50.0) == pytest.approx(-1.0)
    assert winterness(197, 50.0) == pytest.approx(-1.0, abs=0.01)
    assert winterness(15, 0.0) == 0.0 and abs(winterness(15, 3.0)) == pytest.approx(0.1)


# --------------------------------------------------------------------------------- real data


def test_real_lc_csv_discover(real_data_dir: Path):
    path = real_data_dir / "globe-observer" / "lc.csv"
    d = GlobeObserver(str(path), photos_dir="/nonexistent").discover()
    assert d.info["rows"] == 296 and d.info["csv_format"] == "raw"
    assert d.info["rejected_while_parsing"] == {"no label": 72, "too few photos": 48}
    assert len(d.items) == 176 and len(d.rejects) == 120
    rows = _read_csv(path)
    by_line = {}
    with open(path, newline="", encoding="utf-8") as fh:  # physical line of each row
        reader = csv.reader(fh)
        next(reader)
        for fields in reader:
            by_line[reader.line_num] = dict(zip(["", *LC_COLUMNS], fields, strict=True))
    for r in d.rejects:
        row = by_line[int(r["path"].rsplit(":", 1)[1])]
        if r["reason"].startswith("no label"):
            # every unlabelled row is a site definition, and the reason says so
            assert row["landcoversDataSource"] == "GLOBE Data Entry Site Definition"
            assert "landcoversSnowIce (snow_ice) is empty" in r["reason"]
            assert "Site Definition" in r["reason"]
        else:
            assert re.match(r"too few photos: [0-5] of 6 photos, min_photos is 6 \(", r["reason"])
    assert sum(1 for r in rows if r["landcoversSnowIce"] == "") == 72
    # splits by site: no site in two splits; metadata finite; labels 0/1
    site_splits: dict[str, set[str]] = {}
    for it in d.items:
        site_splits.setdefault(it["groups"]["site"], set()).add(it["split"])
        assert np.isfinite(it["metadata"]).all() and len(it["metadata"]) == len(FEATURES)
        assert set(it["label"]) <= {0, 1}
    assert all(len(s) == 1 for s in site_splits.values())
    assert Counter(it["split"] for it in d.items)["train"] > 100
    snow = sum(it["label"][0] for it in d.items)
    assert 0 < snow < 176
    countries = Counter(it["groups"]["country"] for it in d.items)
    assert countries["KEN"] > 0 and None in countries
    # more records with fewer photos when zero images are allowed
    loose = GlobeObserver(str(path), photos_dir="/nonexistent", min_photos=1).discover()
    assert len(loose.items) == 176 + 47  # one labelled record has no photo at all


def test_real_records_read_from_a_local_mirror(real_data_dir: Path, tmp_path: Path):
    path = real_data_dir / "globe-observer" / "lc.csv"
    mirror = tmp_path / "photos"
    src = GlobeObserver(str(path), photos_dir=str(mirror), photo_size=24)
    items = src.discover().items[:5]
    for it in items[:4]:
        for loc in it["photos"].values():
            assert loc.startswith(str(mirror)) and loc.endswith("/original.jpg")
            Path(loc).parent.mkdir(parents=True, exist_ok=True)
            Path(loc).write_bytes(_jpeg(hash(loc) % 1000))
    for it in items[:4]:
        s = src.read(it)
        assert set(s["arrays"]) == {*DIRECTIONS, "metadata"}
        assert s["arrays"]["down"].shape == (3, 24, 24) and s["arrays"]["down"].dtype == np.uint8
        assert s["label"].tolist() == it["label"] and s["meta"]["missing_photos"] == ""
    with pytest.raises(PatchError, match="photo missing: 0 of 6 photos usable") as exc:
        src.read(items[4])
    assert exc.value.path == items[4]["photos"]["north"]
    assert "no such file" in exc.value.reason


def test_real_cleaned_export(real_data_dir: Path):
    d = GlobeObserver(str(real_data_dir / "globe-observer" / "lc_small.csv"),
                      photos_dir="/nonexistent").discover()
    assert d.info["csv_format"] == "cleaned" and d.info["rows"] == 5
    reasons = " | ".join(r["reason"] for r in d.rejects)
    assert "photo pending GLOBE review (landcoversDownwardPhotoUrl is 'pending')" in reasons
    assert "photo rejected by GLOBE review (landcoversDownwardPhotoUrl is 'rejected')" in reasons
    assert len(d.items) == 2
    it = d.items[0]
    assert it["groups"]["lat"] == pytest.approx(39.18563)  # lc_MGRSLatitude, not the GPS fix
    assert it["photos"]["north"].endswith("/2021/01/01/2072267/original.jpg") or it["photos"]


# ----------------------------------------------------------------------------- synthetic twin


def test_synthetic_exact_export_format(synth):
    text = Path(synth.csv).read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header == "," + ",".join(LC_COLUMNS)
    if REAL_LC.is_file():
        assert header == REAL_LC.read_text(encoding="utf-8").splitlines()[0]
    rows = _read_csv(Path(synth.csv))
    assert len(rows) == synth.rows == 48 + synth.site_definitions and synth.site_definitions > 0
    assert [r[""] for r in rows] == [str(i) for i in range(len(rows))]
    url_re = re.compile(r"^https://data\.globe\.gov/system/photos/\d{4}/\d{2}/\d{2}/\d+/"
                        r"original\.jpg$")
    for r in rows:
        assert r["protocol"] == "land_covers" and r["organizationName"] == SYNTHETIC_ORGANIZATION
        assert re.match(r"^\d{4}-\d{2}-\d{2}$", r["measuredDate"])
        assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$", r["createDate"])
        assert re.match(r"^-?\d+\.\d+$", r["latitude"]) and re.match(r"^M\d+$",
                                                                       r["landcoversMucCode"])
        site_def = r["landcoversDataSource"] == "GLOBE Data Entry Site Definition"
        for d in ("North", "South", "East", "West", "Upward", "Downward"):
            assert (r[f"landcovers{d}PhotoUrl"] == "") if site_def else \
                url_re.match(r[f"landcovers{d}PhotoUrl"])
        for col in ("landcoversSnowIce", "landcoversLeavesOnTrees", "landcoversMuddy"):
            assert r[col] in (("",) if site_def else ("True", "False"))
        if not site_def:
            assert re.match(r"^\d+\.0$", r["landcoversUserid"])  # float: NaN in the column
            assert re.match(r"^\d+% MUC \d\d( \([a-z]\))? \[", r["landcoversNorthClassifications"])
            photo = Path(synth.photos_dir) / photo_rel_path(r["landcoversNorthPhotoUrl"])
            assert photo.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG where the URL says
    assert "SYNTHETIC" in (Path(synth.out_dir) / "README.txt").read_text()


def test_synthetic_is_deterministic_and_stable_in_n(tmp_path: Path):
    a = write_synthetic_globe(tmp_path / "a", 6, seed=5, photo_px=(32, 24), progress=False)
    b = write_synthetic_globe(tmp_path / "b", 6, seed=5, photo_px=(32, 24), progress=False)
    c = write_synthetic_globe(tmp_path / "c", 9, seed=5, photo_px=(32, 24), progress=False)
    assert Path(a.csv).read_bytes() == Path(b.csv).read_bytes()
    assert a.latent == c.latent[:6]
    for p in Path(a.photos_dir).rglob("*.jpg"):
        rel = p.relative_to(a.photos_dir)
        assert p.read_bytes() == (Path(b.photos_dir) / rel).read_bytes()
        assert p.read_bytes() == (Path(c.photos_dir) / rel).read_bytes()


def test_synthetic_labels_follow_the_rules(tmp_path: Path):
    info = write_synthetic_globe(tmp_path, 160, seed=1, photo_px=(48, 36), progress=False)
    src = GlobeObserver(info.csv, photos_dir=info.photos_dir, photo_size=24)
    d = src.discover()
    assert d.info["synthetic"] is True and src.spec.synthetic is True
    assert len(d.items) == 160 and d.info["rejected_while_parsing"] == {
        "no label": info.site_definitions}
    items = {it["patch_id"]: it for it in d.items}
    feats = list(FEATURES)
    dark_means: dict[bool, list[float]] = {True: [], False: []}
    agree_meta = agree_season = deciduous = 0
    crown_share: dict[str, list[float]] = {"none": [], "evergreen": [], "deciduous": []}
    for lat in info.latent:
        it = items[lat["patch_id"]]
        s = src.read(it)
        assert s["label"].tolist() == [int(lat["snow"]), int(lat["leaves"])]
        down, up = s["arrays"]["down"].mean(), s["arrays"]["up"].mean()
        if lat["visible"]:
            assert up > 80 and (down > 200 if lat["snow"] else 40 < down < 190)
        else:
            assert down < 45 and up < 45
            dark_means[lat["snow"]].append(float(down))
            assert lat["snow"] == lat["snow_by_metadata"]
            m = dict(zip(feats, it["metadata"], strict=True))
            noiseless = 33 - 0.55 * m["abs_latitude"] - 6.5 * m["elevation_m"] / 1000 \
                - 12 * m["winterness"] < 0
            agree_meta += noiseless == lat["snow"]
        horizontal = np.concatenate([s["arrays"][k] for k in ("north", "south", "east", "west")],
                                    axis=2).astype(int)
        dark_green = ((horizontal[0] < 55) & (horizontal[1] > 50)
                      & (horizontal[1] - horizontal[0] > 25)).mean()
        crowns = ((np.abs(horizontal[0] - 128) < 12) & (np.abs(horizontal[1] - 118) < 12)
                  & (np.abs(horizontal[2] - 105) < 12)).mean()
        crown_share[lat["tree_type"]].append(float(crowns))
        if lat["tree_type"] == "evergreen":
            assert lat["leaves"] and dark_green > 0.01
        elif lat["tree_type"] == "none":
            assert not lat["leaves"] and dark_green < 0.01
        else:
            assert dark_green < 0.015
            deciduous += 1
            agree_season += lat["leaves"] == (lat["winterness"] < 0.2)
    # grey-brown crowns stand for deciduous trees (a few such pixels occur elsewhere)
    assert min(crown_share["deciduous"]) > 0.01
    assert np.mean(crown_share["deciduous"]) > 4 * max(np.mean(crown_share["none"]),
                                                       np.mean(crown_share["evergreen"]))
    # the dark photos carry no snow information; the metadata rule decides those records
    assert abs(np.mean(dark_means[True]) - np.mean(dark_means[False])) < 6
    n_dark = len(dark_means[True]) + len(dark_means[False])
    assert agree_meta >= 0.85 * n_dark and agree_season >= 0.85 * deciduous > 0
    assert "photos AND metadata" in describe_synthetic_rules()


# ------------------------------------------------------------------------------- bad inputs


CORRUPT = {"no_label": 0, "bad_label": 1, "bad_date": 2, "bad_time": 3, "bad_latitude": 4,
           "missing_photo": 5, "rejected_photo": 6, "pending_photo": 7, "corrupt_jpeg": 8,
           "absent_file": 9, "malformed_row": 10}


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("globe_bad")
    info = write_synthetic_globe(root, 16, seed=2, photo_px=(32, 24), corrupt=CORRUPT,
                                 progress=False)
    return info


def test_bad_records_are_rejected_with_file_line_and_reason(corrupted):
    src = GlobeObserver(corrupted.csv, photos_dir=corrupted.photos_dir, photo_size=16)
    d = src.discover()
    reasons = {r["reason"].split(":")[0]: [] for r in d.rejects}
    for r in d.rejects:
        assert r["path"].startswith(corrupted.csv + ":")
        reasons[r["reason"].split(":")[0]].append(r["reason"])
    text = " | ".join(r["reason"] for r in d.rejects)
    assert "no label: landcoversSnowIce (snow_ice) is empty ('GLOBE Observer App' record)" in text
    assert "bad value: landcoversLeavesOnTrees is 'maybe', expected True or False" in text
    assert re.search(r"bad date: measuredDate '20\d\d-13-45' is not a YYYY-MM-DD date", text)
    assert "bad date: landcoversMeasuredAt 'yesterday afternoon' is not an ISO date" in text
    assert "bad value: latitude is 'north', not a number" in text
    assert "no photo (landcoversNorthPhotoUrl is '')" in text
    assert "photo rejected by GLOBE review (landcoversDownwardPhotoUrl is 'rejected')" in text
    assert "photo pending GLOBE review (landcoversUpwardPhotoUrl is 'pending')" in text
    assert "malformed row: 57 fields, the header has 55" in text
    bad = {k: corrupted.corrupted[k][0] for k in CORRUPT}
    ids = {it["patch_id"] for it in d.items}
    for kind in ("corrupt_jpeg", "absent_file"):
        assert bad[kind] in ids  # found only when reading the photos
    for kind in set(CORRUPT) - {"corrupt_jpeg", "absent_file"}:
        assert bad[kind] not in ids
    assert len(d.items) == 16 - 9

    items = {it["patch_id"]: it for it in d.items}
    with pytest.raises(PatchError, match=r"corrupt photo: 5 of 6 photos usable") as exc:
        src.read(items[bad["corrupt_jpeg"]])
    assert exc.value.path == items[bad["corrupt_jpeg"]]["photos"]["north"]
    assert "not a readable image" in exc.value.reason
    with pytest.raises(PatchError, match=r"photo missing: 5 of 6 .*east .*no such file"):
        src.read(items[bad["absent_file"]])

    # min_photos=5: the broken direction becomes a zero image and its presence feature 0
    loose = GlobeObserver(corrupted.csv, photos_dir=corrupted.photos_dir, photo_size=16,
                          min_photos=5)
    items5 = {it["patch_id"]: it for it in loose.discover().items}
    s = loose.read(items5[bad["corrupt_jpeg"]])
    assert not s["arrays"]["north"].any() and s["arrays"]["south"].any()
    vec = dict(zip(FEATURES, s["arrays"]["metadata"], strict=True))
    assert vec["photo_north"] == 0 and vec["photo_south"] == 1
    assert s["meta"]["missing_photos"] == "north"
    s = loose.read(items5[bad["rejected_photo"]])
    assert not s["arrays"]["down"].any() and s["meta"]["missing_photos"] == "down"


def test_unusable_csv_files(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RsrayError, match=r"empty\.csv: empty file"):
        GlobeObserver(str(empty)).discover()
    other = tmp_path / "other.csv"
    other.write_text(",a,b\n0,1,2\n")
    with pytest.raises(RsrayError, match=r"other.csv: not a GLOBE land-cover export: columns "
                                         r"\['measuredDate'"):
        GlobeObserver(str(other)).discover()
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RsrayError, match=r"bin\.csv: not UTF-8"):
        GlobeObserver(str(binary)).discover()


def test_duplicate_records_and_holdout_keys(synth, tmp_path: Path):
    from rsray.data.splits import apply_holdout, parse_holdout

    lines = Path(synth.csv).read_text(encoding="utf-8").splitlines(keepends=True)
    dup = tmp_path / "lc.csv"
    dup.write_text("".join([*lines, lines[-1]]), encoding="utf-8")
    d = GlobeObserver(str(dup), photos_dir=synth.photos_dir).discover()
    assert any(r["reason"].startswith("duplicate record: globe-") for r in d.rejects)
    code = next(it["groups"]["country"] for it in d.items if it["groups"]["country"])
    info = apply_holdout(d.items, parse_holdout([f"country={code}", "elevation=2000:"]),
                         dataset="globe")
    assert info["moved"] >= 1
    assert all(it["split"] == "ood" for it in d.items if it["groups"]["country"] == code)


# --------------------------------------------------------------------------------- HTTP layer


def test_fetcher_retries_then_succeeds_and_gives_up_clearly(fake_globe: FakeGlobe):
    slept: list[float] = []
    fetcher = HttpFetcher(timeout=5, retries=3, backoff=0.5, sleep=slept.append)
    fake_globe.fail["/system/photos/2021/x/"] = 2
    data = fetcher.get(f"{fake_globe.url}/system/photos/2021/x/original.jpg")
    assert data[:3] == b"\xff\xd8\xff"
    assert fake_globe.count("/system/photos/2021/x/") == 3 and slept == [0.5, 1.0]
    fake_globe.missing.add("/system/photos/404.jpg")
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found \(not retried\)"):
        fetcher.get(f"{fake_globe.url}/system/photos/404.jpg")
    assert fake_globe.count("/system/photos/404.jpg") == 1
    slept.clear()
    dead = f"http://127.0.0.1:{_free_port()}/photo.jpg"
    with pytest.raises(FetchError, match=r"unreachable \(.*\) after 4 attempts") as exc:
        fetcher.get(dead)
    assert exc.value.url == dead and slept == [0.5, 1.0, 2.0]
    with pytest.raises(ConfigError, match="retries"):
        HttpFetcher(retries=-1)


def test_photos_fetched_once_then_served_from_the_cache(fake_globe: FakeGlobe, lc_rows,
                                                        tmp_path: Path):
    csv_path = tmp_path / "lc.csv"
    download_land_covers(str(csv_path), "2000-01-01", "2030-12-31",
                         client=GlobeApiClient(f"{fake_globe.url}/search/v1/measurement/"
                                               "protocol/measureddate/"))
    cache = tmp_path / "cache"
    src = GlobeObserver(str(csv_path), cache_dir=str(cache), photo_size=16, **_fast())
    items = src.discover().items[:3]
    before = fake_globe.count("/system/photos/")
    for it in items:
        assert src.read(it)["arrays"]["west"].shape == (3, 16, 16)
    assert fake_globe.count("/system/photos/") - before == 18
    url = items[0]["photos"]["north"]
    stored = UrlCache(str(cache)).path_for(url)
    assert Path(stored).name == hashlib.sha256(url.encode()).hexdigest()
    assert Path(stored).read_bytes()[:3] == b"\xff\xd8\xff"
    assert not list(cache.rglob(".*tmp*"))
    again = GlobeObserver(str(csv_path), cache_dir=str(cache), photo_size=16, **_fast())
    for it in items:
        again.read(it)
    assert fake_globe.count("/system/photos/") - before == 18  # nothing fetched twice

    # an unreachable photo URL: the record is rejected naming the URL and the failure
    dead = f"http://127.0.0.1:{_free_port()}/system/photos/dead.jpg"
    broken = dict(items[1], photos={**items[1]["photos"], "up": dead})
    with pytest.raises(PatchError, match=r"photo unreachable: 5 of 6 photos usable") as exc:
        again.read(broken)
    assert exc.value.path == dead and "after 3 attempts" in exc.value.reason


def test_photo_url_map_rewrites_the_host(fake_globe: FakeGlobe, synth, tmp_path: Path):
    src = GlobeObserver(synth.csv, cache_dir=str(tmp_path / "c"), photo_size=16,
                        photo_url_map=(GLOBE_PHOTOS, fake_globe.url), **_fast())
    it = src.discover().items[0]
    assert it["photos"]["down"].startswith(fake_globe.url + "/system/photos/")
    src.read(it)
    assert fake_globe.count("/system/photos/") == 6


# ------------------------------------------------------------------------------- API client


def test_api_client_round_trips_the_export(fake_globe: FakeGlobe, lc_rows, tmp_path: Path):
    api = f"{fake_globe.url}/search/v1/measurement/protocol/measureddate/"
    out = tmp_path / "lc.csv"
    dates = sorted(r["measuredDate"] for r in lc_rows)
    fake_globe.fail["/search/"] = 2  # the API is busy twice, then answers
    client = GlobeApiClient(api, fetcher=HttpFetcher(retries=2, backoff=0.001))
    result = download_land_covers(str(out), dates[0], dates[-1], client=client)
    assert result.records == len(lc_rows) and result.requests == 1
    assert fake_globe.count("/search/") == 3
    got = _read_csv(out)
    assert list(got[0]) == ["", *LC_COLUMNS]
    for a, b in zip(got, lc_rows, strict=True):
        b = {k: v.replace(GLOBE_PHOTOS, fake_globe.url) if k.endswith("PhotoUrl") else v
             for k, v in b.items()}
        assert a == b  # the same cells, byte for byte
    d = GlobeObserver(str(out), photos_dir="/nonexistent").discover()
    assert len(d.items) > 0


def test_api_client_bbox_chunks_pages_and_errors(fake_globe: FakeGlobe, lc_rows):
    api = f"{fake_globe.url}/search/v1/measurement/protocol/measureddate/"
    fast = HttpFetcher(retries=0, timeout=5)
    lat = float(lc_rows[1]["latitude"])
    box = BBox(lat - 0.5, lat + 0.5, -180, 180)
    dates = sorted(r["measuredDate"] for r in lc_rows)
    client = GlobeApiClient(api, fetcher=fast)
    rows, _ = client.fetch_rows(dates[0], dates[-1], box)
    want = [r for r in lc_rows if abs(float(r["latitude"]) - lat) <= 0.5]
    assert len(rows) == len(want) > 0
    assert "/lat/lon/?protocols=land_covers&startdate=" in client.urls[0]
    assert "minlat=" in client.urls[0] and "geojson=FALSE&sample=FALSE" in client.urls[0]
    # windows of 7 days and pages of 10 records give the same rows
    paged = GlobeApiClient(api, fetcher=fast, chunk_days=7, page_size=10)
    rows2, dups = paged.fetch_rows(dates[0], dates[-1])
    assert len(rows2) == len(lc_rows) and dups == 0 and paged.requests > 2
    assert all("from=" in u and "size=10" in u for u in paged.urls)
    assert parse_bbox("10,20,-5,5") == BBox(10, 20, -5, 5)
    with pytest.raises(ConfigError, match="bbox"):
        parse_bbox("10,20")
    with pytest.raises(ConfigError, match="after end"):
        client.fetch_rows("2021-02-01", "2021-01-01")
    dead = GlobeApiClient(f"http://127.0.0.1:{_free_port()}/search/", fetcher=fast)
    with pytest.raises(GlobeApiError, match=r"unreachable.*no internet access"):
        dead.fetch_rows("2021-01-01", "2021-01-02")
    with pytest.raises(GlobeApiError, match="answer is not JSON"):
        GlobeApiClient(f"{fake_globe.url}/system/photos/", fetcher=fast).fetch_rows(
            "2021-01-01", "2021-01-02")
    with pytest.raises(GlobeApiError, match="'data' is a list"):
        flatten_record({"pid": 1, "data": [1, 2]})


def test_prepare_command_line_downloads_then_builds_the_source(fake_globe: FakeGlobe, lc_rows,
                                                               tmp_path: Path):
    from rsray.cli import build_parser
    from rsray.data.registry import get_dataset

    api = f"{fake_globe.url}/search/v1/measurement/protocol/measureddate/"
    csv_path = tmp_path / "dl" / "lc.csv"
    dates = sorted(r["measuredDate"] for r in lc_rows)
    args = build_parser().parse_args([
        "prepare", "globe", "--csv", str(csv_path), "--out", str(tmp_path / "shards"),
        "--download", "--start", dates[0], "--end", dates[-1], "--api-root", api,
        "--chunk-days", "10", "--photo-size", "32", "--min-photos", "4",
        "--split-fractions", "0.6,0.4,0", "--photo-url-map", f"{GLOBE_PHOTOS}=http://mirror",
        "--exclude-feature", "raining_snowing", "--photo-layout", "stacked"])
    src = get_dataset("globe").source_from_args(args)
    assert len(_read_csv(csv_path)) == len(lc_rows) and fake_globe.count("/search/") >= 1
    assert src.photo_size == 32 and src.min_photos == 4 and src.layout == "stacked"
    assert src.split_fractions == (0.6, 0.4, 0.0) and "raining_snowing" not in src.feature_names
    assert src.photo_url_map == (GLOBE_PHOTOS, "http://mirror")
    assert [m.name for m in src.spec.modalities] == ["photos", "metadata"]
    d = src.discover()
    assert {it["split"] for it in d.items} <= {"train", "val"}
    for bad in (["--split-fractions", "0.5,x"], ["--photo-url-map", "nothing"]):
        args = build_parser().parse_args(["prepare", "globe", "--csv", str(csv_path), "--out",
                                          str(tmp_path / "s"), *bad])
        with pytest.raises(ConfigError, match=bad[0]):
            get_dataset("globe").source_from_args(args)
    args = build_parser().parse_args(["prepare", "globe", "--csv", str(csv_path), "--out",
                                      str(tmp_path / "s"), "--download"])
    with pytest.raises(ConfigError, match="--download needs --start and --end"):
        get_dataset("globe").source_from_args(args)


# ------------------------------------------------------------------------------ Ray: prepare


def test_prepare_fetches_through_the_cache_and_rejects_unreachable(
        fake_globe: FakeGlobe, tmp_path: Path, ray_session):
    from rsray.data.prepare import prepare
    from rsray.data.shards import read_manifest

    api = f"{fake_globe.url}/search/v1/measurement/protocol/measureddate/"
    port = _free_port()
    dead = [f"http://127.0.0.1:{port}/system/photos/gone/{d}.jpg" for d in ("north", "west")]

    def photos(r: dict[str, Any]) -> int:
        return sum(1 for k, v in r["data"].items() if k.endswith("PhotoUrl") and v
                   and v.startswith("http"))

    # labelled records with 5 or 6 photos (items then differ in keys: Arrow structs fill None);
    # the synthetic twin's records all have 6, so every third one loses its east photo
    keep = [r for r in fake_globe.records if r["data"]["landcoversSnowIce"] is not None
            and photos(r) >= 5][:14]
    assert len(keep) == 14
    if all(photos(r) == 6 for r in keep):
        for r in keep[1::3]:
            r["data"]["landcoversEastPhotoUrl"] = None
    assert {photos(r) for r in keep} == {5, 6}
    full = next(r for r in keep if photos(r) == 6)
    full["data"]["landcoversNorthPhotoUrl"], full["data"]["landcoversWestPhotoUrl"] = dead
    fake_globe.records = keep
    csv_path = tmp_path / "lc.csv"
    download_land_covers(str(csv_path), "2000-01-01", "2030-12-31",
                         client=GlobeApiClient(api))
    kw = dict(cache_dir=str(tmp_path / "cache"), photo_size=16, min_photos=5, **_fast())
    out = str(tmp_path / "shards")
    result = prepare(GlobeObserver(str(csv_path), **kw), out)
    fetched = fake_globe.count("/system/photos/")
    assert fetched > 0
    assert len(result.manifest.rejects) == 1
    reject = result.manifest.rejects[0]
    assert reject["path"] == dead[0] and reject["reason"].startswith(
        "photo unreachable: 4 of 6 photos usable, min_photos is 5")
    assert dead[1] in reject["reason"] and "after 3 attempts" in reject["reason"]
    assert sum(result.manifest.splits.values()) == 13
    prepare(GlobeObserver(str(csv_path), **kw), out, overwrite=True)
    assert fake_globe.count("/system/photos/") == fetched  # second prepare: cache only
    assert read_manifest(out).splits == result.manifest.splits


def test_prepare_and_stream_into_a_fusion_model_with_metadata(tmp_path: Path, ray_session):
    import torch

    from rsray.config import DataConfig
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.models import create_model

    info = write_synthetic_globe(tmp_path / "raw", 24, seed=4, photo_px=(40, 30),
                                 progress=False)
    out = str(tmp_path / "shards")
    res = prepare(GlobeObserver(info.csv, photos_dir=info.photos_dir, photo_size=32), out)
    m = res.manifest
    assert m.task == "binary" and m.classes == list(CLASSES) and m.synthetic
    assert sum(m.splits.values()) == 24 and len(m.rejects) == info.site_definitions
    assert m.band_stats["metadata"]["latitude"]["std"] > 0
    cfg = DataConfig(uri=out, batch_size=4, image_size=32)
    manifest, ds = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg)
    assert plan.metadata_dim == len(FEATURES) and plan.channels == dict.fromkeys(DIRECTIONS, 3)
    batch = finalize_batch(ds["train"].take_batch(batch_size=4, batch_format="numpy"), plan)
    assert batch["metadata"].shape == (4, len(FEATURES)) and batch["down"].shape == (4, 3, 32, 32)
    assert torch.isfinite(batch["metadata"]).all()
    model = create_model("test_progressive_fusion", modalities=plan.channels, num_classes=2,
                         metadata_dim=plan.metadata_dim)
    inputs = {k: batch[k] for k in (*DIRECTIONS, "metadata")}
    logits = model(inputs)
    assert logits.shape == (4, 2)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    loss.backward()
    grads = [p.grad for p in model.meta_embed.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)  # the metadata reaches the loss
