"""Keeping cloud credentials out of what Ray records.

Ray Tune copies ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
``AWS_SECURITY_TOKEN`` from the driver's environment into the ``runtime_env`` of every trial
actor (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``). A runtime_env is not a safe
place for a secret: Ray's runtime-env agent writes it in plain text to
``<session>/logs/runtime_env_agent.log``, and the state API / dashboard shows it with the task.
rsray's test suite caught this with a planted secret (tests/test_prometheus_dashboards.py).

rsray therefore turns that propagation off before it starts a Tuner. Trials still reach S3:
on a cluster through the nodes' IAM instance profile (cluster.yaml), on a local Ray because
its workers inherit the environment of the process that started it.
"""

from __future__ import annotations

CREDENTIAL_ENV_VARS: tuple[str, ...] = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
)
"""Credential variables that must never be copied into a runtime_env."""


def keep_credentials_out_of_runtime_envs() -> list[str]:
    """Stop Ray Tune from copying credential variables into trial actors' runtime_envs.

    Returns the names removed from Tune's propagation list (empty when already done, or when
    a Ray version no longer propagates them). Idempotent.
    """
    from ray.tune.execution import class_cache

    propagated = class_cache.ENV_VARS_TO_PROPAGATE
    removed = sorted(name for name in CREDENTIAL_ENV_VARS if name in propagated)
    for name in removed:
        propagated.discard(name)
    return removed
