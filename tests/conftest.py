"""Shared fixtures: a real Redis (skipped on a laptop without one, required in CI)."""

from __future__ import annotations

import os

import hypothesis  # imported early: see below
import pytest

from tests.support.annotate_page import annotation_batch  # noqa: F401  (a fixture every module may use)
from tests.support.examples import CI_MAX_EXAMPLES
from tests.support.otel_capture import capture  # noqa: F401  (a fixture every module may use)
from tests.support.redis_server import private_redis_url  # noqa: F401  (a fixture every module may use)

# CPython 3.11.7 can raise "SystemError: AST constructor recursion depth mismatch" when pytest's
# assertion rewriter first imports the hypothesis plugin module at the end of a session that ran
# litellm; importing it at start-up keeps that rewrite out of the teardown path.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The judge cache stays in memory during tests: no cache file in the working tree.
os.environ.setdefault("EVALUATOR_JUDGE_CACHE", "memory")

# Hypothesis profiles: `ci` (CI=true) runs every property at the example counts it names; `dev`,
# the default elsewhere, a fifth of them (tests.support.examples scales explicit counts too).
# HYPOTHESIS_PROFILE=ci|dev picks one explicitly.
hypothesis.settings.register_profile("ci", max_examples=CI_MAX_EXAMPLES)
hypothesis.settings.register_profile("dev", max_examples=CI_MAX_EXAMPLES // 5)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                                 or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev"))

REDIS_URL = os.environ.get("EVALUATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_url() -> str:
    """A clean Redis database for one test. In CI (CI=true) an unreachable Redis fails."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required in CI but unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(autouse=True)
def fresh_judge_runtime():
    """Every test starts with an empty judge cache and fresh breakers and rate limiters: judges
    built without a runtime share the process's (evaluator.judges.runtime.default_runtime)."""
    from evaluator.core.settings import DEFAULTS
    from evaluator.judges.runtime import default_runtime, reset_default_runtime

    reset_default_runtime()
    default_runtime(DEFAULTS.model_copy(update={"judge_cache": "memory"}))
    yield
    reset_default_runtime()
