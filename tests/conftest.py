"""Shared fixtures: the real-sample folder, one local Ray for the session, synthetic shards."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ``../shared/data/real`` beside the clone; RSRAY_REAL_DATA points elsewhere (e.g. from a worktree).
REAL_DATA = Path(os.environ.get("RSRAY_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

# Ray's own processes must not try to reach the internet or print usage stats.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# The heads tests start themselves (`ray start --head --block`, stopped with SIGTERM) would
# otherwise wait out Ray's 30 s drain on SIGTERM, meant for preempted cloud nodes.
os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A local S3 endpoint (moto server, started on demand by the `s3_bucket` fixture). Set before
# any Ray process starts so that Ray Data tasks inherit it. Dummy credentials, loopback only.
S3_PORT = int(os.environ.setdefault("RSRAY_TEST_S3_PORT", str(_free_port())))
os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{S3_PORT}"
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real`` beside the repository; tests using it skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real samples not available: {REAL_DATA} does not exist (a user's clone "
                    "has no ../shared; the synthetic twins cover the same code)")
    return REAL_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every Ray integration test of the session."""
    import ray

    from rsray.runtime import ensure_ray, shutdown_ray

    ensure_ray(num_cpus=4)
    yield ray
    shutdown_ray()


@pytest.fixture(autouse=True)
def _ray_session_is_up(request: pytest.FixtureRequest) -> None:
    """Start the session's Ray again for a test that uses it after another test stopped it.

    The job-submit and Prometheus tests run their own ``ray start --head`` on Ray's default
    ports and so stop the in-process instance; a later test asking for ``ray_session`` must
    still find a running Ray, whatever order the files run in.
    """
    if "ray_session" not in request.fixturenames or request.node.get_closest_marker(
            "own_ray_head"):
        return  # (a test with its own head on Ray's default ports must not get it back)
    import ray

    if not ray.is_initialized():
        from rsray.runtime import ensure_ray

        ensure_ray(num_cpus=4)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 synthetic BigEarthNet-MM patch pairs in the v1 on-disk format (seed 0)."""
    from rsray.data.sources.bigearthnet import write_synthetic_bigearthnet

    root = tmp_path_factory.mktemp("ben_synth")
    write_synthetic_bigearthnet(root, 96, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory,
                     ray_session) -> str:
    """The synthetic patches prepared into a local shard set."""
    from rsray.data.prepare import prepare
    from rsray.data.sources.bigearthnet import BigEarthNetMM

    out = tmp_path_factory.mktemp("ben_shards") / "shards"
    source = BigEarthNetMM(str(synthetic_raw / "BigEarthNet-S2"),
                           str(synthetic_raw / "BigEarthNet-S1"))
    prepare(source, str(out), target_shard_mb=1.0)
    return str(out)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto in server mode) on 127.0.0.1, as s3fs's own tests use."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    yield os.environ["AWS_ENDPOINT_URL"]
    server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket; returns its s3:// URI."""
    import uuid

    import s3fs

    name = f"rsray-test-{uuid.uuid4().hex[:8]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def trained_checkpoint(synthetic_shards: str, tmp_path_factory: pytest.TempPathFactory,
                       ray_session) -> str:
    """A ``test_early_fusion_cnn`` trained 2 epochs on ``synthetic_shards``: its last checkpoint.

    ``evaluate`` and ``predict`` tests score the same checkpoint, so it is trained once.
    """
    from rsray.config import load_config
    from rsray.train.driver import fit

    storage = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "data.batch_size=8", "data.image_size=60",
        "model.name=test_early_fusion_cnn", "scaling.num_workers=1",
        "scaling.cpus_per_worker=1", "train.max_epochs=2",
        f"train.storage_path={storage}", "train.name=eval-run", "train.log_every_n_steps=1000",
        "train.num_to_keep=3",
    ])
    result = fit(cfg)
    assert result.error is None and result.checkpoint is not None
    return result.checkpoint.path


@pytest.fixture
def lr_trace():
    """``trace(optim_cfg, epochs)``: the LR each epoch trains with under rsray's schedule."""
    import torch

    from rsray.train.optim import build_scheduler

    def trace(cfg, epochs: int) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        sched = build_scheduler(opt, cfg, epochs)
        out = []
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    return trace
