"""The GPU benchmark's smoke mode runs on a CPU and reports a figure for every section."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from rsray.bench.gpu import SectionTimeoutError, run_gpu_benchmark, time_limit


def test_a_section_over_its_limit_is_stopped() -> None:
    t0 = time.monotonic()
    with pytest.raises(SectionTimeoutError), time_limit(1):
        time.sleep(5)
    assert time.monotonic() - t0 < 3


def test_smoke_models_and_pipeline_on_cpu(tmp_path: Path, synthetic_shards: str,
                                          ray_session) -> None:
    lines: list[str] = []
    r = run_gpu_benchmark(tmp_path, smoke=True, sections=("models", "pipeline"),
                          shards=synthetic_shards, say=lines.append)
    assert not r.errors, r.errors
    assert set(r.models) == {"test_vit_sct_fusion", "test_progressive_fusion",
                             "test_early_fusion_cnn"}
    for m in r.models.values():
        assert m["samples_per_s"] > 0 and m["gflops_per_sample"] > 0
        assert math.isnan(m["mfu"])  # no known peak on a CPU
    assert set(r.pipeline) == {"streaming", "materialised", "cache=device"}
    assert all(p["samples_per_s"] > 0 for p in r.pipeline.values())
    assert any("pipeline streaming" in line for line in lines), lines


@pytest.mark.slow
def test_smoke_trials_and_packing_on_cpu(tmp_path: Path, synthetic_shards: str,
                                         ray_session) -> None:
    from rsray.study.packing import time_packing

    r = run_gpu_benchmark(tmp_path, smoke=True, sections=("trials", "packing"),
                          shards=synthetic_shards, say=print, packing=time_packing)
    assert not r.errors, r.errors
    assert set(r.trials) == {"local", "trainer"}
    assert all(t["trials"] == 1 for t in r.trials.values())
    assert all(r.packing[f"{m}_seeds_per_hour"] > 0 for m in ("separate", "sequential", "vmap"))
