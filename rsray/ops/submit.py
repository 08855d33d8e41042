"""Submit a job to a Ray cluster from Python, follow its logs, return its final status.

A thin layer over Ray's :class:`ray.job_submission.JobSubmissionClient`: the working directory
(rsray's checkout by default) is uploaded with rsray's excludes on top of ``.gitignore``
(virtual environments, local data and results never travel), the cluster's authentication
token is sent when there is one, and credentials are refused in the job's environment (the
cluster's nodes get S3 access from their IAM role). Used by ``rsray submit``::

    rsray submit --address http://127.0.0.1:8265 -- python jobs/tune_progressive.py --smoke-test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from rsray.errors import RsrayError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
"""Where ``ray dashboard cluster.yaml`` forwards the head's dashboard (and its Jobs API)."""

DEFAULT_EXCLUDES: tuple[str, ...] = (
    # no trailing slash on rsray's own output folders: Ray matches an (empty) folder's own path
    # without the slash, so "rsray_results/" let an empty rsray_results folder through
    ".venv/", "venv/", "rsray_data", "rsray_results", ".git/", "__pycache__/",
    "*.egg-info/", ".pytest_cache/", ".ruff_cache/", "build/", "dist/",
    ".env", ".aws/", "*.pem",
)
"""Never uploaded with the working directory (gitignore syntax, added to ``.gitignore``'s)."""

_CREDENTIAL_NAME = re.compile(
    r"^(AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN|SECURITY_TOKEN)"
    r"|.*(SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|_TOKEN|_API_KEY).*)$",
    re.IGNORECASE,
)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class JobSubmitError(RsrayError):
    """A job could not be submitted, or its environment would carry credentials."""


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer <token>`` when a Ray authentication token is available.

    Looks where Ray itself does: ``RAY_AUTH_TOKEN``, the file in ``RAY_AUTH_TOKEN_PATH``, then
    ``~/.ray/auth_token``. The token is sent only to the cluster, never printed or stored.
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if path.is_file():
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def build_runtime_env(working_dir: str | Path, *, excludes: Sequence[str] = (),
                      env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """The job's ``runtime_env``: working directory, excludes and (credential-free) env vars."""
    wd = Path(working_dir).expanduser().resolve()
    if not wd.is_dir():
        raise JobSubmitError(f"--working-dir {working_dir}: not a directory")
    env_vars = dict(env_vars or {})
    bad = sorted(k for k in env_vars if _CREDENTIAL_NAME.match(k))
    if bad:
        raise JobSubmitError(
            f"--env {', '.join(bad)}: credentials must not travel in a job's runtime_env (it "
            "is stored in the cluster and shown on the dashboard); give the nodes an IAM "
            "instance profile (cluster.yaml) instead")
    runtime_env: dict[str, Any] = {"working_dir": str(wd),
                                   "excludes": [*DEFAULT_EXCLUDES, *excludes]}
    if env_vars:
        runtime_env["env_vars"] = env_vars
    return runtime_env


@contextlib.contextmanager
def _explicit_address() -> Iterator[None]:
    """Hide ``RAY_API_SERVER_ADDRESS`` and ``RAY_ADDRESS`` while the client is built.

    Ray's SDK lets them override the address it is given, so a stale variable would send the
    job to another cluster.
    """
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
             if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        with _explicit_address():
            return JobSubmissionClient(address, headers=auth_headers())
    except (ConnectionError, RuntimeError) as exc:
        raise JobSubmitError(f"{address}: cannot reach the Ray Jobs API ({exc}); is the "
                             "dashboard forwarded (`ray dashboard cluster.yaml`)?") from None


async def _follow(client: Any, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def submit(address: str, entrypoint: Sequence[str] | str, *, working_dir: str | Path = ".",
           excludes: Sequence[str] = (), env_vars: dict[str, str] | None = None,
           submission_id: str | None = None, follow: bool = True,
           timeout_s: float | None = None, poll_s: float = 2.0,
           out: TextIO = sys.stdout) -> tuple[str, str]:
    """Submit ``entrypoint`` with ``working_dir``; follow logs; return (job id, final status).

    With ``follow=False`` returns right after submission (status ``PENDING`` or later). With
    ``timeout_s``, a job still running then is stopped and its status returned.
    """
    command = entrypoint if isinstance(entrypoint, str) else shlex.join(entrypoint)
    if not command.strip():
        raise JobSubmitError("no entrypoint: give the command after `--`")
    runtime_env = build_runtime_env(working_dir, excludes=excludes, env_vars=env_vars)
    client = _client(address)
    job_id = client.submit_job(
        entrypoint=command, runtime_env=runtime_env,
        submission_id=submission_id or f"rsray-{uuid.uuid4().hex[:12]}",
    )
    print(f"[rsray] submitted job {job_id} to {address}: {command}", file=out, flush=True)
    if not follow:
        return job_id, str(client.get_job_status(job_id).value)
    try:
        asyncio.run(asyncio.wait_for(_follow(client, job_id, out), timeout_s))
    except TimeoutError:
        print(f"[rsray] job {job_id} still running after {timeout_s} s: stopping it",
              file=out, flush=True)
        client.stop_job(job_id)
    except KeyboardInterrupt:
        print(f"\n[rsray] stopped following; job {job_id} keeps running "
              f"(`ray job stop {job_id}` ends it)", file=out, flush=True)
        return job_id, str(client.get_job_status(job_id).value)
    # The log stream closes when the job ends; its status may trail by a moment.
    deadline = time.monotonic() + 60
    status = str(client.get_job_status(job_id).value)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll_s)
        status = str(client.get_job_status(job_id).value)
    print(f"[rsray] job {job_id}: {status}", file=out, flush=True)
    return job_id, status


def add_submit_args(p: argparse.ArgumentParser) -> None:
    """Flags of ``rsray submit``."""
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", DEFAULT_ADDRESS),
                   help="Ray dashboard / Jobs API address (default: $RAY_API_SERVER_ADDRESS or "
                        "%(default)s, where `ray dashboard cluster.yaml` forwards it)")
    p.add_argument("--working-dir", default=".", help="uploaded as the job's working directory")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="also leave out files matching PATTERN (gitignore syntax; repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the job (no credentials; repeatable)")
    p.add_argument("--submission-id", help="job id (default: rsray-<random>)")
    p.add_argument("--no-wait", action="store_true", help="return after submitting")
    p.add_argument("--timeout", type=float, help="stop the job after this many seconds")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER,
                   help="the job's command, after `--`")


def cmd_submit(args: argparse.Namespace) -> None:
    """``rsray submit [flags] -- COMMAND``: raise when the job does not succeed."""
    entrypoint = list(args.entrypoint)
    if entrypoint[:1] == ["--"]:
        entrypoint = entrypoint[1:]
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise JobSubmitError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    job_id, status = submit(args.address, entrypoint, working_dir=args.working_dir,
                            excludes=args.exclude, env_vars=env,
                            submission_id=args.submission_id, follow=not args.no_wait,
                            timeout_s=args.timeout)
    if not args.no_wait and status != "SUCCEEDED":
        raise JobSubmitError(f"job {job_id} ended {status} (`ray job logs {job_id}` shows why)")
