"""Stage-2 seeds packed into one trial (``factors.pack_seeds``) equal their separate runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsray.config import load_config
from rsray.errors import ConfigError
from rsray.study.runner import pack_jobs, run_jobs, seed_job
from rsray.study.spec import Evaluation, spec_from_dict
from rsray.study.store import STUDY_JSON, StudyStore


def _store(root: Path) -> StudyStore:
    store = StudyStore(root)
    store.write_json(STUDY_JSON, {})
    return store


def _job(cfg, store: StudyStore, cell: str, seed: int) -> dict:
    return seed_job(cfg.with_overrides({"train.seed": seed}), store=store, cell=cell, seed=seed,
                    experiment="pack", splits=["test"],
                    evaluation=Evaluation(splits=["test"], drop_modalities=False,
                                          predictions=False),
                    headline="ap_macro", keys={"cell": cell, "seed": seed},
                    label=f"{cell} seed {seed + 1}/2")


def test_packs_group_a_cells_seeds_in_order() -> None:
    jobs = [{"id": f"{c}__seed{s}"} for c in ("a", "b") for s in range(5)]
    packs = pack_jobs(jobs, 2)
    assert {k: [j["id"] for j in v] for k, v in packs.items()} == {
        "a__seed0": ["a__seed0", "a__seed1"], "a__seed2": ["a__seed2", "a__seed3"],
        "a__seed4": ["a__seed4"], "b__seed0": ["b__seed0", "b__seed1"],
        "b__seed2": ["b__seed2", "b__seed3"], "b__seed4": ["b__seed4"]}
    assert len(pack_jobs(jobs, 1)) == 10


def test_pack_seeds_must_be_positive() -> None:
    raw = {"name": "x", "arms": [{"name": "a", "model": "test_progressive_fusion",
                                  "modalities": ["s2"]}], "baseline": "a",
           "factors": {"pack_seeds": 0}}
    with pytest.raises(ConfigError, match=r"factors\.pack_seeds: 0 must be >= 1"):
        spec_from_dict(raw)


def test_pack_mode_is_checked() -> None:
    raw = {"name": "x", "arms": [{"name": "a", "model": "test_progressive_fusion",
                                  "modalities": ["s2"]}], "baseline": "a",
           "factors": {"pack_seeds": 2, "pack_mode": "vectorised"}}
    with pytest.raises(ConfigError, match=r"factors\.pack_mode: 'vectorised' must be one of"):
        spec_from_dict(raw)


@pytest.mark.slow
@pytest.mark.parametrize(("cache", "model", "mode"), [
    ("auto", "test_progressive_fusion", "auto"), ("off", "test_progressive_fusion", "auto"),
    ("off", "test_vit_middle_fusion", "vmap")])
def test_packed_seed_equals_its_separate_run(synthetic_shards: str, tmp_path: Path,
                                              ray_session, cache: str, model: str,
                                              mode: str) -> None:
    """Seeds 0 and 1 packed in one trial; seed 1 again alone: seed 1's metrics are equal.

    ``off``: the training split is streamed (one execution for both epochs, its units'
    order, shuffle and augmentation drawn from the seed). A BatchNorm family packs one seed
    after another (``auto``); a ViT fusion trains its seeds as one vectorised step (``vmap``,
    each seed's stream its own), whose rounding differs (tests/test_vmap_pack.py).
    """
    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "data.batch_size=16", "data.eval_splits=[val]",
        f"data.cache='{cache}'", "data.image_size=32",
        f"model.name={model}", "scaling.num_workers=1",
        "scaling.cpus_per_worker=0.5", "train.max_epochs=2", "train.log_every_n_steps=1000",
        *(["model.params.drop_path_rate=0.0"] if mode == "vmap" else [])])  # no random masks
    packed_store, alone_store = _store(tmp_path / "packed"), _store(tmp_path / "alone")
    packed = [_job(cfg, packed_store, "c", s) for s in (0, 1)]
    alone = [_job(cfg, alone_store, "c", 1)]
    run_jobs(packed, packed_store, concurrency=1, pack=2, pack_mode=mode)
    run_jobs(alone, alone_store, concurrency=1, pack=1)
    docs = [json.loads((Path(j["dir"]) / "result.json").read_text()) for j in packed]
    assert [d.get("packed") for d in docs] == [mode if mode == "vmap" else None] * 2

    def rows(job: dict) -> dict[str, float]:
        doc = json.loads((Path(job["dir"]) / "result.json").read_text())
        return {f"{r['split']}/{r['metric']}": r["value"] for r in doc["rows"]}

    a, b, other = rows(packed[1]), rows(alone[0]), rows(packed[0])
    assert a and a.keys() == b.keys()
    rel = 1e-4 if mode == "vmap" else 1e-5
    assert a == pytest.approx(b, rel=rel, abs=1e-6, nan_ok=True)  # nan: a class never seen
    assert a != pytest.approx(other, rel=1e-5, abs=1e-6, nan_ok=True)  # seeds differ


def test_auto_keeps_a_cpu_pack_sequential(tmp_path: Path) -> None:
    """``pack_mode: auto`` vectorises GPU packs only; ``vmap`` is what asks for it on CPUs."""
    from rsray.study.packing import AUTO_NEEDS_GPU, run_pack_vectorised

    cfg = load_config(None, ["model.name=test_vit_middle_fusion", "scaling.use_gpu=no"])
    store = _store(tmp_path)
    jobs = [_job(cfg, store, "c", s) for s in (0, 1)]
    assert AUTO_NEEDS_GPU
    assert run_pack_vectorised(jobs, "auto") is False  # nothing trained, nothing read
    assert not any((Path(j["dir"]) / "result.json").exists() for j in jobs)


def test_packing_report_names_each_mode_against_separate() -> None:
    from rsray.study.packing import format_packing

    cfg = load_config(None, ["model.name=test_vit_middle_fusion", "train.max_epochs=2"])
    p = {"separate_seconds": 30.0, "separate_seeds_per_hour": 360.0, "separate_vectorised": 0,
         "vmap_seconds": 20.0, "vmap_seeds_per_hour": 540.0, "vmap_vectorised": 3}
    text = format_packing(p, cfg, 3)
    assert text.splitlines()[0] == ("packed seeds: 3 seeds of test_vit_middle_fusion, 2 "
                                    "epoch(s) each, one trial at a time")
    assert "one trial per seed" in text and "1.00x" in text
    assert "packed, one vectorised step" in text and "1.50x  (3 seed(s) vectorised)" in text
    assert "one after another" not in text  # a mode not measured is not printed
