"""Geographic covariates: reprojection, indices, validation, synthetic layers, prepare + stream."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform

from rsray.data.schema import BandGroup, DatasetSpec, Discovery, ModalitySpec
from rsray.data.sources.covariates import (
    FILLED_META_KEY,
    CovariateLayer,
    WithCovariates,
    layers_from_args,
    normalized_difference,
    resize_bilinear,
    warp_layer,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

UTM33 = CRS.from_epsg(32633)
# A 120 x 120 px, 10 m patch in UTM 33N (around 13.7 E, 48.2 N), as BigEarthNet v1 has them.
PATCH_TRANSFORM = Affine(10.0, 0.0, 404400.0, 0.0, -10.0, 5342400.0)
GEO = {"crs": UTM33.to_wkt(), "transform": list(PATCH_TRANSFORM)[:6], "width": 120,
       "height": 120}


def _write(path: Path, arr: np.ndarray, crs: Any, tr: Affine, nodata: float | None = None,
           **kw: Any) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype.name, crs=crs, transform=tr, nodata=nodata,
                       **kw) as dst:
        dst.write(arr, 1)
    return str(path)


def _lonlat_grid(lon0: float, lat0: float, res: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    lons = lon0 + (np.arange(n) + 0.5) * res
    lats = lat0 - (np.arange(n) + 0.5) * res
    return np.meshgrid(lons, lats)


def _gradient_layer(path: Path, res: float = 1 / 1200, lon0: float = 13.2, lat0: float = 48.7,
                    n: int = 900) -> str:
    """EPSG:4326 layer with value = 100 * lon + 50 * lat (exactly linear)."""
    lon, lat = _lonlat_grid(lon0, lat0, res, n)
    return _write(path, (100 * lon + 50 * lat).astype(np.float64), "EPSG:4326",
                  from_origin(lon0, lat0, res, res))


def _patch_lonlat(size: int = 120) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    tr = PATCH_TRANSFORM @ Affine.scale(120 / size)
    xs, ys = tr @ (cols, rows)
    lon, lat = transform(UTM33, "EPSG:4326", xs.ravel(), ys.ravel())
    return np.asarray(lon).reshape(xs.shape), np.asarray(lat).reshape(xs.shape)


class GridSource:
    """A tiny georeferenced source: S2-like bands given by the test, one patch per item."""

    def __init__(self, bands: dict[str, np.ndarray] | None = None, geo: Any = GEO,
                 n: int = 2) -> None:
        b = bands or {"B03": np.full((8, 8), 800, np.uint16), "B04": np.full((8, 8), 600,
                      np.uint16), "B08": np.full((8, 8), 3000, np.uint16),
                      "B11": np.full((4, 4), 1800, np.uint16)}
        self.bands = b
        self.geo = geo
        self.n = n
        s10 = tuple(k for k in b if b[k].shape[0] == 8)
        s20 = tuple(k for k in b if b[k].shape[0] == 4)
        groups = [BandGroup("s2_10m", s10, 8, "uint16")]
        if s20:
            groups.append(BandGroup("s2_20m", s20, 4, "uint16"))
        self.spec = DatasetSpec("grid", "multilabel", ("a", "b"),
                                (ModalitySpec("s2", tuple(groups)),))

    def discover(self) -> Discovery:
        return Discovery(items=[{"patch_id": f"p{i}", "split": "train"} for i in range(self.n)])

    def read(self, item: dict[str, Any]) -> dict[str, Any]:
        arrays = {g.name: np.stack([self.bands[b] for b in g.bands])
                  for g in self.spec.modalities[0].groups}
        out: dict[str, Any] = {"patch_id": item["patch_id"], "split": item["split"],
                               "label": np.array([1, 0], np.uint8), "arrays": arrays,
                               "meta": {}}
        if self.geo is not None:
            out["geo"] = self.geo
        return out


# --------------------------------------------------------------------------------------------
# Reprojection
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_geographic_gradient_onto_utm_patch_matches_analytic(tmp_path: Path, resampling: str):
    layer = CovariateLayer("dem", _gradient_layer(tmp_path / "grad.tif"), resampling=resampling)
    src = WithCovariates(GridSource(), [layer], size=120)
    out = src.read({"patch_id": "p0", "split": "train"})["arrays"]["dem"]
    lon, lat = _patch_lonlat()
    expected = 100 * lon + 50 * lat
    assert out.shape == (1, 120, 120) and out.dtype == np.float32
    # a linear field is reproduced exactly by bilinear/cubic interpolation: the only error is
    # float32 storage (values ~3800, eps ~2.4e-4); one layer pixel spans 0.08 in value
    assert np.abs(out[0] - expected).max() < 2e-3
    # and a coarser output grid (size=30) covers the same footprint
    src30 = WithCovariates(GridSource(), [layer], size=30)
    out30 = src30.read({"patch_id": "p0", "split": "train"})["arrays"]["dem"][0]
    lon30, lat30 = _patch_lonlat(30)
    assert np.abs(out30 - (100 * lon30 + 50 * lat30)).max() < 2e-3


def test_nearest_keeps_categorical_codes_and_one_hot(tmp_path: Path):
    # EPSG:3857 layer, 37 m pixels, codes in 3 x 3-pixel blocks
    merc = CRS.from_epsg(3857)
    x, y = transform(UTM33, merc, [405000.0], [5341800.0])
    res, n = 37.0, 200
    x0, y0 = x[0] - n * res / 2, y[0] + n * res / 2
    codes = np.array([10, 20, 30, 40, 50, 60, 80], np.uint8)
    rng = np.random.default_rng(0)
    blocks = rng.choice(codes, size=(n // 3 + 1, n // 3 + 1))
    arr = np.kron(blocks, np.ones((3, 3), np.uint8))[:n, :n]
    path = _write(tmp_path / "lc.tif", arr, merc, from_origin(x0, y0, res, res), nodata=0)

    with rasterio.open(path) as ds:
        raw = warp_layer(ds, CovariateLayer("lc", path, resampling="nearest"), UTM33,
                         PATCH_TRANSFORM, 120, "p0")
        bilinear = warp_layer(ds, CovariateLayer("lc", path), UTM33, PATCH_TRANSFORM, 120, "p0")
    assert set(np.unique(raw)) <= set(codes.astype(float))
    # each patch pixel takes the code of the layer pixel under its centre
    cols, rows = np.meshgrid(np.arange(120) + 0.5, np.arange(120) + 0.5)
    xs, ys = PATCH_TRANSFORM @ (cols, rows)
    mx, my = transform(UTM33, merc, xs.ravel(), ys.ravel())
    c = np.floor((np.asarray(mx) - x0) / res).astype(int)
    r = np.floor((y0 - np.asarray(my)) / res).astype(int)
    expected = arr[r, c].reshape(120, 120)
    assert (raw == expected).mean() > 0.99
    assert not set(np.unique(bilinear)) <= set(codes.astype(float))  # invents codes: why nearest

    layer = CovariateLayer("lc", path, resampling="nearest", categories=tuple(codes.tolist()))
    src = WithCovariates(GridSource(), [layer], size=120)
    assert src.spec.modality("lc").bands == tuple(f"lc_{c}" for c in codes)
    onehot = src.read({"patch_id": "p0", "split": "train"})["arrays"]["lc"]
    assert onehot.shape == (7, 120, 120) and set(np.unique(onehot)) == {0.0, 1.0}
    assert (onehot.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(codes[onehot.argmax(axis=0)], raw)


def test_modalities_grouping_dtype_and_discover_info(tmp_path: Path):
    grad = _gradient_layer(tmp_path / "g.tif")
    src = WithCovariates(GridSource(),
                         [CovariateLayer("temperature", grad, modality="climate"),
                          CovariateLayer("wind", grad, modality="climate"),
                          CovariateLayer("dem", grad)],
                         ["ndvi", "ndwi"], dtype="float16")
    spec = src.spec
    assert [m.name for m in spec.modalities] == ["s2", "climate", "dem", "indices"]
    assert spec.modality("climate").bands == ("temperature", "wind")
    assert spec.modality("indices").bands == ("NDVI", "NDWI")
    assert spec.modality("dem").groups[0].size == 8  # the source's largest image group
    assert FILLED_META_KEY in spec.meta_keys
    disc = src.discover()
    cov = disc.info["covariates"]
    assert cov["layers"][0]["crs"] == "EPSG:4326" and cov["size"] == 8
    s = src.read(disc.items[0])
    assert s["arrays"]["climate"].shape == (2, 8, 8) and s["arrays"]["climate"].dtype == np.float16
    assert s["meta"][FILLED_META_KEY] == "" and "flags" not in s
    import pickle

    again = pickle.loads(pickle.dumps(src))  # open files do not travel; reopened on use
    assert again._open == {}
    np.testing.assert_array_equal(again.read(disc.items[0])["arrays"]["dem"], s["arrays"]["dem"])


# --------------------------------------------------------------------------------------------
# Indices
# --------------------------------------------------------------------------------------------


def test_indices_on_hand_made_bands():
    red = np.array([[600, 0], [1000, 2000]], np.uint16)
    nir = np.array([[3000, 0], [1000, 500]], np.uint16)
    green = np.array([[800, 0], [3000, 100]], np.uint16)
    np.testing.assert_allclose(normalized_difference(nir, red),
                               [[2400 / 3600, 0.0], [0.0, -1500 / 2500]], rtol=1e-6)
    np.testing.assert_allclose(normalized_difference(green, nir),
                               [[-2200 / 3800, 0.0], [0.5, -400 / 600]], rtol=1e-6)
    # processing baseline 04.00 offset: DN 1000 is reflectance 0
    np.testing.assert_allclose(normalized_difference(np.array([3000.0]), np.array([1000.0]),
                                                     offset=-1000), [1.0])

    bands = {"B03": np.tile(green, (4, 4)), "B04": np.tile(red, (4, 4)),
             "B08": np.tile(nir, (4, 4)), "B11": np.full((4, 4), 1800, np.uint16)}
    src = WithCovariates(GridSource(bands, geo=None), indices=["ndvi", "ndwi", "ndmi"])
    s = src.read({"patch_id": "p0", "split": "train"})  # indices alone need no georeference
    idx = s["arrays"]["indices"]
    assert idx.shape == (3, 8, 8) and idx.dtype == np.float32
    np.testing.assert_allclose(idx[0], normalized_difference(bands["B08"], bands["B04"]))
    np.testing.assert_allclose(idx[1], normalized_difference(bands["B03"], bands["B08"]))
    # B11 (20 m, 4 x 4) is brought to the 8 x 8 grid before the ratio
    np.testing.assert_allclose(idx[2], normalized_difference(bands["B08"],
                                                             np.full((8, 8), 1800.0)), rtol=1e-6)
    assert np.abs(idx).max() <= 1.0
    # SEN12MS spells the bands B3/B4/B8: the same defaults find them
    short = {k.replace("B0", "B"): v for k, v in bands.items() if k != "B11"}
    ndvi = WithCovariates(GridSource(short, geo=None), indices=["ndvi"]).read(
        {"patch_id": "p0", "split": "train"})["arrays"]["indices"][0]
    np.testing.assert_array_equal(ndvi, idx[0])


def test_resize_bilinear_matches_torch():
    import torch
    import torch.nn.functional as F

    a = np.random.default_rng(1).random((5, 7))
    ours = resize_bilinear(a, 12)
    ref = F.interpolate(torch.from_numpy(a)[None, None], size=(12, 12), mode="bilinear",
                        align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Bad input: every one gets its clear error
# --------------------------------------------------------------------------------------------


def _read(src: WithCovariates) -> dict[str, Any]:
    return src.read({"patch_id": "p0", "split": "train"})


def test_missing_unreadable_and_crs_less_layers_stop_discover(tmp_path: Path):
    missing = str(tmp_path / "nope.tif")
    with pytest.raises(DatasetNotFoundError, match=f"{missing}: covariate layer 'dem': file "
                                                   "not found"):
        WithCovariates(GridSource(), [CovariateLayer("dem", missing)]).discover()

    broken = tmp_path / "broken.tif"
    broken.write_bytes(Path(_gradient_layer(tmp_path / "g.tif")).read_bytes()[:100])
    with pytest.raises(RsrayError, match=f"{broken}: covariate layer 'dem': not a readable"):
        WithCovariates(GridSource(), [CovariateLayer("dem", str(broken))]).discover()

    no_crs = _write(tmp_path / "nocrs.tif", np.ones((50, 50), np.float32), None,
                    from_origin(13.2, 48.7, 0.01, 0.01))
    with pytest.raises(RsrayError, match=f"{no_crs}: covariate layer 'dem': the file has no CRS"):
        WithCovariates(GridSource(), [CovariateLayer("dem", no_crs)]).discover()

    with pytest.raises(RsrayError, match="band 2 asked for, the file has 1"):
        WithCovariates(GridSource(), [CovariateLayer("dem", _gradient_layer(tmp_path / "h.tif"),
                                                     band=2)]).discover()


def test_truncated_layer_is_a_patch_error_naming_the_layer(tmp_path: Path):
    path = tmp_path / "dem.tif"
    lon, _ = _lonlat_grid(13.2, 48.7, 1 / 1200, 900)
    _write(path, (100 * lon).astype(np.float32), "EPSG:4326", from_origin(13.2, 48.7, 1 / 1200,
                                                                           1 / 1200))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    src = WithCovariates(GridSource(), [CovariateLayer("dem", str(path))])
    src.discover()  # the header is intact; the patch's rows are gone
    with pytest.raises(PatchError, match="unreadable or truncated GeoTIFF") as exc:
        _read(src)
    assert exc.value.path == str(path) and "patch p0" in exc.value.reason


def test_layer_outside_or_nodata_over_the_patch_is_rejected(tmp_path: Path):
    far = _gradient_layer(tmp_path / "far.tif", lon0=2.0, lat0=40.0, n=100)
    src = WithCovariates(GridSource(), [CovariateLayer("dem", far)])
    with pytest.raises(PatchError, match=r"covariate layer 'dem' does not cover patch p0: the "
                                         r"patch .* lies outside the layer bounds") as exc:
        _read(src)
    assert exc.value.path == far

    lon, _ = _lonlat_grid(13.2, 48.7, 1 / 1200, 900)
    empty = _write(tmp_path / "empty.tif", np.full(lon.shape, -32768, np.float32), "EPSG:4326",
                   from_origin(13.2, 48.7, 1 / 1200, 1 / 1200), nodata=-32768)
    with pytest.raises(PatchError, match="does not cover patch p0: every pixel is nodata"):
        _read(WithCovariates(GridSource(), [CovariateLayer("dem", empty)]))


def test_partial_coverage_rejected_or_filled_and_flagged(tmp_path: Path):
    lon, lat = _lonlat_grid(13.2, 48.7, 1 / 1200, 900)
    arr = (100 * lon + 50 * lat).astype(np.float32)
    plon, _ = _patch_lonlat()
    cut = float(np.quantile(plon, 0.3))  # about 30 % of the patch lies west of the cut
    arr[lon < cut] = -1
    path = _write(tmp_path / "part.tif", arr, "EPSG:4326", from_origin(13.2, 48.7, 1 / 1200,
                                                                        1 / 1200), nodata=-1)
    with pytest.raises(PatchError, match=r"covariate layer 'dem': \d+\.\d% of patch p0 has no "
                                         r"data .* max_missing is 0\.0%"):
        _read(WithCovariates(GridSource(), [CovariateLayer("dem", path)], size=120))
    layer = CovariateLayer("dem", path, max_missing=0.5, fill=0.0)
    s = _read(WithCovariates(GridSource(), [layer], size=120))
    dem = s["arrays"]["dem"][0]
    share = float(s["meta"][FILLED_META_KEY].split(":")[1])
    assert 0.25 < share < 0.35 and s["flags"][FILLED_META_KEY] is True
    assert math.isclose((dem == 0).mean(), share, abs_tol=1e-3) and np.isfinite(dem).all()
    mean_fill = _read(WithCovariates(GridSource(), [CovariateLayer("dem", path, max_missing=0.5)],
                                     size=120))["arrays"]["dem"][0]
    assert mean_fill.min() > 3000  # filled with the patch's valid mean, not a sentinel


def test_undeclared_nan_rejected_declared_nan_is_missing(tmp_path: Path):
    lon, lat = _lonlat_grid(13.2, 48.7, 1 / 1200, 900)
    arr = (100 * lon + 50 * lat).astype(np.float32)
    plon, plat = _patch_lonlat()
    arr[(np.abs(lon - plon.mean()) < 0.002) & (np.abs(lat - plat.mean()) < 0.002)] = np.nan
    path = _write(tmp_path / "nan.tif", arr, "EPSG:4326", from_origin(13.2, 48.7, 1 / 1200,
                                                                       1 / 1200))
    with pytest.raises(PatchError, match=r"covariate layer 'dem': \d+ NaN value\(s\) in or next "
                                         "to patch p0, and the layer does not declare NaN") as e:
        _read(WithCovariates(GridSource(), [CovariateLayer("dem", path)]))
    assert e.value.path == path
    s = _read(WithCovariates(GridSource(), [CovariateLayer("dem", path, nodata=float("nan"),
                                                            max_missing=0.2)], size=120))
    assert np.isfinite(s["arrays"]["dem"]).all() and s["meta"][FILLED_META_KEY].startswith("dem:")


def test_unknown_category_code_and_float16_overflow(tmp_path: Path):
    lon, _ = _lonlat_grid(13.2, 48.7, 1 / 1200, 900)
    lc = _write(tmp_path / "lc.tif", np.where(lon < 13.72, 10, 77).astype(np.uint8), "EPSG:4326",
                from_origin(13.2, 48.7, 1 / 1200, 1 / 1200), nodata=0)
    layer = CovariateLayer("lc", lc, resampling="nearest", categories=(10, 20))
    with pytest.raises(PatchError, match=r"patch p0 has code\(s\) \[77\] not in the layer's "
                                         r"categories \[10, 20\]"):
        _read(WithCovariates(GridSource(), [layer]))
    big = _write(tmp_path / "big.tif", np.full(lon.shape, 1e6, np.float32), "EPSG:4326",
                 from_origin(13.2, 48.7, 1 / 1200, 1 / 1200))
    with pytest.raises(PatchError, match="p0: big: values do not fit float16"):
        _read(WithCovariates(GridSource(), [CovariateLayer("big", big)], dtype="float16"))


def test_patch_without_or_with_bad_georeference(tmp_path: Path):
    grad = _gradient_layer(tmp_path / "g.tif")
    src = WithCovariates(GridSource(geo=None), [CovariateLayer("dem", grad)])
    with pytest.raises(RsrayError, match="the GridSource reader gives no georeference "
                                         r"\(sample\['geo'\]\) for p0"):
        src.discover()
    with pytest.raises(PatchError, match=r"p0: the GridSource reader gave no georeference"):
        _read(src)
    bad = {**GEO, "crs": ""}
    with pytest.raises(RsrayError, match="unusable georeference: p0: sample\\['geo'\\] has no CRS"):
        WithCovariates(GridSource(geo=bad), [CovariateLayer("dem", grad)]).discover()
    with pytest.raises(PatchError, match="incomplete or malformed"):
        _read(WithCovariates(GridSource(geo={"crs": GEO["crs"]}), [CovariateLayer("dem", grad)]))


def test_configuration_errors(tmp_path: Path):
    grad = str(tmp_path / "g.tif")
    with pytest.raises(ConfigError, match="needs nearest or mode resampling, not bilinear"):
        CovariateLayer("lc", grad, categories=(1, 2))
    with pytest.raises(ConfigError, match="use letters, digits"):
        CovariateLayer("my dem", grad)
    with pytest.raises(ConfigError, match="resampling 'linear' is not one of"):
        CovariateLayer("dem", grad, resampling="linear")
    with pytest.raises(ConfigError, match=r"indices: \['evi'\] unknown"):
        WithCovariates(GridSource(), indices=["evi"])
    bands = {"B03": np.ones((8, 8), np.uint16), "B04": np.ones((8, 8), np.uint16)}
    with pytest.raises(ConfigError, match="the nir band 'B08' is not in modality s2 of grid"):
        WithCovariates(GridSource(bands), indices=["ndvi"])
    with pytest.raises(ConfigError, match="covariate modality 's2' clashes"):
        WithCovariates(GridSource(), [CovariateLayer("s2", grad)])
    with pytest.raises(ConfigError, match="ask for sizes"):
        WithCovariates(GridSource(), [CovariateLayer("t", grad, modality="c", size=4),
                                      CovariateLayer("w", grad, modality="c")])


def test_command_line_flags():
    from rsray.cli import build_parser
    from rsray.data.sources.covariates import wrap_from_args

    layers = layers_from_args(
        ["dem=s3://bucket/dem.tif", "lc=/data/lc.tif:nearest", "t=C:/x.tif:cubic"],
        ["lc.categories=10,20,30", "dem.nodata=-32768", "dem.max_missing=0.1", "t.band=2"])
    assert (layers[0].path, layers[0].resampling, layers[0].nodata) == ("s3://bucket/dem.tif",
                                                                        "bilinear", -32768.0)
    assert layers[0].max_missing == 0.1
    assert (layers[1].path, layers[1].categories) == ("/data/lc.tif", (10, 20, 30))
    assert (layers[2].path, layers[2].resampling, layers[2].band) == ("C:/x.tif", "cubic", 2)
    with pytest.raises(ConfigError, match="expected NAME=PATH"):
        layers_from_args(["dem"], [])
    with pytest.raises(ConfigError, match="no --covariate named 'dme'"):
        layers_from_args(["dem=/d.tif"], ["dme.nodata=0"])
    with pytest.raises(ConfigError, match="unknown option 'scale'"):
        layers_from_args(["dem=/d.tif"], ["dem.scale=2"])
    with pytest.raises(ConfigError, match="'x' is not a valid nodata"):
        layers_from_args(["dem=/d.tif"], ["dem.nodata=x"])

    args = build_parser().parse_args([
        "prepare", "bigearthnet", "--s2-root", "/a", "--s1-root", "/b", "--out", "/c",
        "--covariate", "dem=/d.tif", "--indices", "ndvi,ndwi", "--covariate-dtype", "float16"])
    src = wrap_from_args(object.__new__(_SpecOnly), args)
    assert isinstance(src, WithCovariates) and src.indices == ("ndvi", "ndwi")
    assert src.dtype == "float16" and src.layers[0].name == "dem"
    plain = build_parser().parse_args(["prepare", "bigearthnet", "--s2-root", "/a",
                                       "--s1-root", "/b", "--out", "/c"])
    inner = object.__new__(_SpecOnly)
    assert wrap_from_args(inner, plain) is inner


class _SpecOnly:
    spec = GridSource().spec


# --------------------------------------------------------------------------------------------
# Remote layers
# --------------------------------------------------------------------------------------------


def test_s3_layer_reads_like_local(tmp_path: Path, s3_bucket: str):
    import s3fs

    local = _gradient_layer(tmp_path / "grad.tif")
    fs = s3fs.S3FileSystem()
    fs.put(local, f"{s3_bucket}/layers/grad.tif")
    remote = WithCovariates(GridSource(), [CovariateLayer("dem", f"{s3_bucket}/layers/grad.tif")],
                            size=120)
    remote.discover()
    want = _read(WithCovariates(GridSource(), [CovariateLayer("dem", local)], size=120))
    np.testing.assert_array_equal(_read(remote)["arrays"]["dem"], want["arrays"]["dem"])
    with pytest.raises(DatasetNotFoundError, match="covariate layer 'dem': file not found"):
        WithCovariates(GridSource(), [CovariateLayer("dem", f"{s3_bucket}/x.tif")]).discover()


# --------------------------------------------------------------------------------------------
# Synthetic layers and the full path through prepare and streaming
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ben_with_layers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from rsray.data.sources.bigearthnet import write_synthetic_bigearthnet
    from rsray.data.sources.covariates import write_synthetic_covariates

    root = tmp_path_factory.mktemp("ben_cov")
    write_synthetic_bigearthnet(root / "raw", 16, seed=3, progress=False)
    info = write_synthetic_covariates(root / "raw", root / "layers", seed=1, progress=False)
    return root, info


def test_synthetic_layers_cover_patches_and_encode_wetlands(ben_with_layers):
    from rsray.data.sources.bigearthnet import BIGEARTHNET_19_CLASSES, BigEarthNetMM
    from rsray.data.sources.covariates import LANDCOVER_CODES

    root, info = ben_with_layers
    crs = {}
    for name, path in info.layers.items():
        with rasterio.open(path) as ds:
            crs[name] = ds.crs.to_epsg()
    assert crs == {"dem": 4326, "temperature": 3035, "wind": 3035, "landcover": 3857}
    layers = [CovariateLayer("dem", info.layers["dem"]),
              CovariateLayer("temperature", info.layers["temperature"]),
              CovariateLayer("landcover", info.layers["landcover"], resampling="nearest",
                             categories=LANDCOVER_CODES)]
    src = WithCovariates(BigEarthNetMM(str(root / "raw/BigEarthNet-S2"),
                                       str(root / "raw/BigEarthNet-S1")), layers, ["ndvi"])
    disc = src.discover()
    wet = BIGEARTHNET_19_CLASSES.index("Inland wetlands")
    centre: dict[bool, list[float]] = {True: [], False: []}
    for item in disc.items:
        s = src.read(item)
        dem = s["arrays"]["dem"][0]
        centre[bool(s["label"][wet])].append(float(dem[30:90, 30:90].mean()))
        assert -20 < s["arrays"]["temperature"].mean() < 40
        assert (s["arrays"]["landcover"].sum(axis=0) == 1).all()
    assert info.signal_patches == len(centre[True]) > 0 and centre[False]
    assert max(centre[True]) < 30  # the 15-25 m lowland floor under every wetland patch
    assert min(centre[False]) > 95  # the terrain elsewhere stays above 100 m


def test_prepare_with_covariate_flags_streams_into_a_model(ben_with_layers, tmp_path: Path,
                                                           ray_session):
    import torch

    from rsray.cli import build_parser
    from rsray.config import DataConfig
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare_from_args
    from rsray.data.shards import read_manifest
    from rsray.models import create_model

    root, info = ben_with_layers
    out = str(tmp_path / "shards")
    args = build_parser().parse_args([
        "prepare", "bigearthnet", "--s2-root", str(root / "raw/BigEarthNet-S2"),
        "--s1-root", str(root / "raw/BigEarthNet-S1"), "--out", out, "--shard-mb", "1",
        *info.prepare_flags, "--covariate-opt", "temperature.modality=climate",
        "--covariate-opt", "wind.modality=climate"])
    prepare_from_args(args)
    m = read_manifest(out)
    assert list(m.modalities) == ["s2", "s1", "dem", "climate", "landcover", "indices"]
    assert m.modalities["climate"]["bands"] == ["temperature", "wind"]
    assert 0 < m.band_stats["dem"]["dem"]["std"] < 1000
    assert -1 < m.band_stats["indices"]["NDVI"]["mean"] < 1
    assert [la["name"] for la in m.info["covariates"]["layers"]] == ["dem", "temperature",
                                                                     "wind", "landcover"]
    assert not m.rejects

    cfg = DataConfig(uri=out, batch_size=4, modalities=["s2", "dem", "climate", "landcover",
                                                        "indices"])
    manifest, datasets = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg)
    assert plan.channels == {"s2": 10, "dem": 1, "climate": 2, "landcover": 7, "indices": 2}
    batch = finalize_batch(next(iter(datasets["train"].iter_torch_batches(batch_size=4))), plan)
    assert batch["dem"].shape == (4, 1, 120, 120) and batch["landcover"].shape == (4, 7, 120, 120)
    model = create_model("test_early_fusion_cnn", modalities=plan.channels, num_classes=19)
    logits = model(batch)
    assert logits.shape == (4, 19) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    loss.backward()


def test_synth_covariates_command(ben_with_layers, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]):
    from rsray.cli import main

    root, _ = ben_with_layers
    assert main(["synth", "covariates", "--like", str(root / "raw"), "--out",
                 str(tmp_path / "layers")]) == 0
    out = capsys.readouterr().out
    assert "16 patches" in out and f"--covariate dem={tmp_path / 'layers' / 'dem.tif'}" in out
    assert (tmp_path / "layers" / "README.txt").read_text().startswith("SYNTHETIC")
    assert main(["synth", "covariates", "--out", str(tmp_path / "x")]) == 2
    assert "--like RAW_FOLDER is required" in capsys.readouterr().err
    assert main(["synth", "covariates", "--like", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "y")]) == 2
    assert "nowhere: --like must be a raw dataset folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Segmentation with covariate layers as extra modalities (FLAIR-2 + DEM / temperature)
# --------------------------------------------------------------------------------------------


def _stem_conv(model: Any, in_chans: int) -> Any:
    import torch

    return next(m for m in model.modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels == in_chans)


def test_unetformer_takes_covariates_as_extra_modalities():
    import torch

    from rsray.models import create_model

    mods = {"aerial": 5, "dem": 1, "temperature": 1}
    model = create_model("test_unetformer", modalities=mods, num_classes=4,
                         extra_modalities=["dem", "temperature"])
    assert model.modalities == ("aerial", "dem", "temperature") and model.in_chans == 7
    torch.manual_seed(0)
    x = {"aerial": torch.randn(2, 5, 64, 64), "dem": torch.randn(2, 1, 32, 32),  # resized
         "temperature": torch.randn(2, 1, 64, 64)}
    logits = model(x)
    assert logits.shape == (2, 4, 64, 64)
    logits.square().mean().backward()
    grad = _stem_conv(model, 7).weight.grad
    assert grad is not None and float(grad[:, 5:].abs().sum()) > 0  # the covariates are used
    with torch.no_grad():  # and change the output
        assert not torch.allclose(model({**x, "dem": x["dem"] + 3}), logits)
    with pytest.raises(KeyError, match="'temperature' is missing"):
        model({"aerial": x["aerial"], "dem": x["dem"]})
    with pytest.raises(ConfigError, match="extra_modalities"):
        create_model("test_unetformer", modalities=mods, num_classes=4,
                     extra_modalities=["wind"])


def test_flair2_with_covariate_layers_prepares_and_trains_a_step(tmp_path: Path, ray_session):
    import pyarrow.parquet as pq
    import torch

    from rsray.config import Config, DataConfig
    from rsray.data.decode import decode_raw
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.registry import get_dataset
    from rsray.data.sources.covariates import write_synthetic_covariates
    from rsray.models import create_model
    from rsray.train.tasks import build_task

    entry = get_dataset("flair2")
    entry.write_synthetic(tmp_path / "raw", 4, 0)
    info = write_synthetic_covariates(tmp_path / "raw", tmp_path / "layers", progress=False)
    layers = [CovariateLayer("dem", info.layers["dem"]),
              CovariateLayer("temperature", info.layers["temperature"])]
    uri = str(tmp_path / "shards")
    m = prepare(WithCovariates(entry.synthetic_source(tmp_path / "raw"), layers), uri).manifest
    assert m.task == "segmentation" and not m.rejects
    assert list(m.modalities) == ["aerial", "s2", "dem", "temperature"]
    size = int(m.info["label"]["size"])
    cfg = DataConfig(uri=uri, image_size=size, modalities=["aerial", "dem", "temperature"])
    plan = make_plan(m, cfg)
    split = next(s for s in ("train", "val", "test") if m.splits.get(s))
    batch = finalize_batch(decode_raw(pq.read_table(m.shard_paths(split)[0]), plan), plan)
    assert batch["dem"].shape == (m.splits[split], 1, size, size)
    assert 0.5 < float(batch["dem"].std()) < 2  # normalised with the training statistics
    model = create_model("test_unetformer", modalities=plan.channels,
                         num_classes=len(m.classes), extra_modalities=["dem", "temperature"])
    task = build_task(Config(), "segmentation", m.classes)
    loss = task.loss(model(batch), task.target(batch))
    loss.backward()
    assert torch.isfinite(loss)
    assert float(_stem_conv(model, model.in_chans).weight.grad[:, 5:].abs().sum()) > 0
