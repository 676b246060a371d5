"""The judge benchmark's bare clients post real requests to the local server (a changed client
signature once crashed `make bench` after the suite had passed)."""

import pytest

from benchmarks import bench_judge, bench_limits
from tests.support.openai_server import OpenAIServer


@pytest.mark.parametrize("client", ["openai-post", "openai"])
def test_bench_judge_client_alone_answers_every_request(client: str) -> None:
    count = 6
    with OpenAIServer() as server:
        measured = bench_judge._alone(client, server.base_url, count)
        requests = len(server.stats.requests)
    assert requests == 2 * count  # the warm-up round (all of them, fewer than IN_FLIGHT) and the timed one
    assert measured["per_s"] > 0 and measured["cpu_ms"] > 0


def test_service_baseline_is_the_client_the_transport_posts_with() -> None:
    """The service rows subtract the bare client's CPU per call from the worker's: that must be
    the client the openai transport uses (aiohttp), and its probe must answer."""
    assert bench_limits.client_in_use() == "aiohttp"
    with OpenAIServer() as server:
        measured = bench_limits._probe("aiohttp", server.base_url, "--in-flight", "2",
                                       "--seconds", "0.3")
    assert measured["calls_per_s"] > 0 and measured["failed"] == 0
