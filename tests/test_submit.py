"""rsray submit without a cluster: runtime_env, excludes, token header, refusals.

The live path (a real head, a training job, logs followed, status) is in
tests/test_prometheus_dashboards.py.
"""

import os

import pytest

from rsray.cli import main
from rsray.ops import submit as sm
from rsray.security import CREDENTIAL_ENV_VARS, keep_credentials_out_of_runtime_envs


def test_runtime_env_has_working_dir_and_excludes(tmp_path):
    env = sm.build_runtime_env(tmp_path, excludes=["big/"], env_vars={"RSRAY_X": "1"})
    assert env["working_dir"] == str(tmp_path.resolve())
    for pattern in (".venv/", "rsray_data", "rsray_results", ".git/", "big/"):
        assert pattern in env["excludes"]
    assert env["env_vars"] == {"RSRAY_X": "1"}


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN",
                                  "DB_PASSWORD", "my_api_key_API_KEY"])
def test_credentials_refused_in_runtime_env(tmp_path, name):
    with pytest.raises(sm.JobSubmitError, match="IAM instance profile"):
        sm.build_runtime_env(tmp_path, env_vars={name: "x"})


def test_missing_working_dir(tmp_path):
    with pytest.raises(sm.JobSubmitError, match="not a directory"):
        sm.build_runtime_env(tmp_path / "nope")


def test_auth_header_from_token_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert sm.auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc123\n")
    assert sm.auth_headers() == {"Authorization": "Bearer abc123"}
    other = tmp_path / "tok"
    other.write_text("fromfile")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(other))
    assert sm.auth_headers() == {"Authorization": "Bearer fromfile"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "fromenv")
    assert sm.auth_headers() == {"Authorization": "Bearer fromenv"}


def test_cli_refuses_credentials_and_bad_env(capsys, tmp_path):
    code = main(["submit", "--address", "http://127.0.0.1:1", "--working-dir", str(tmp_path),
                 "--env", "AWS_SECRET_ACCESS_KEY=shh", "--", "python", "-c", "pass"])
    err = capsys.readouterr().err
    assert code == 2 and "AWS_SECRET_ACCESS_KEY" in err and "shh" not in err
    code = main(["submit", "--address", "http://127.0.0.1:1", "--env", "NOEQUALS", "--",
                 "python"])
    assert code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_cli_unreachable_cluster_is_a_clear_error(capsys, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["submit", "--address", f"http://127.0.0.1:{port}", "--working-dir",
                 str(tmp_path), "--", "python", "-c", "pass"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Ray Jobs API" in err


def test_explicit_address_wins_over_environment(monkeypatch):
    seen = {}

    class FakeClient:
        def __init__(self, address, headers):
            seen["address"] = address
            seen["env"] = {k: os.environ.get(k) for k in ("RAY_ADDRESS",
                                                          "RAY_API_SERVER_ADDRESS")}

    import ray.job_submission

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeClient)
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.9.9.9:8265")
    sm._client("http://127.0.0.1:8265")
    assert seen == {"address": "http://127.0.0.1:8265",
                    "env": {"RAY_ADDRESS": None, "RAY_API_SERVER_ADDRESS": None}}
    assert os.environ["RAY_ADDRESS"] == "10.9.9.9:6379"  # restored


def test_tune_no_longer_copies_aws_credentials(monkeypatch):
    from ray.tune.execution import class_cache

    keep_credentials_out_of_runtime_envs()
    assert not set(CREDENTIAL_ENV_VARS) & class_cache.ENV_VARS_TO_PROPAGATE
    assert keep_credentials_out_of_runtime_envs() == []  # idempotent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-secret")

    class Trainable:
        pass

    remote = class_cache._ActorClassCache().get(Trainable)
    assert "planted-secret" not in repr(remote._default_options)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "planted-secret"  # the process keeps it
