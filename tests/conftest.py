"""Shared fixtures: a real Redis (skipped on a laptop without one, required in CI)."""

from __future__ import annotations

import os
import signal

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
# pytest-xdist's workers get COLUMNS=80 LINES=24 in their environment; without them, as in a
# plain pytest run, the CLI's piped output is 160 columns wide (evaluator.monitoring.report).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

# Hypothesis profiles: `ci` (CI=true) runs every property at the example counts it names; `dev`,
# the default elsewhere, a fifth of them (tests.support.examples scales explicit counts too).
# HYPOTHESIS_PROFILE=ci|dev picks one explicitly.
hypothesis.settings.register_profile("ci", max_examples=CI_MAX_EXAMPLES)
hypothesis.settings.register_profile("dev", max_examples=CI_MAX_EXAMPLES // 5)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                                 or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev"))



def _test_redis_url() -> str:
    """EVALUATOR_TEST_REDIS_URL, else database 13 of the local Redis. Under pytest-xdist each
    worker (gwN) takes database 13 - N of that Redis: workers flush only their own."""
    url = os.environ.get("EVALUATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db or 0) - int(worker[2:])}"


REDIS_URL = _test_redis_url()


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


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a shell without job control (`make test &`) inherits
    SIGINT ignored, and so would every process it starts: the Ctrl-C tests (replay, annotate)
    would wait for a signal nobody hears. Give the suite Python's usual Ctrl-C back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
