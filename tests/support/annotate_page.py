"""The annotation page under test: a store judged by `evaluator run` (offline judge, real PII
masking) with an exported batch, and the app in-process behind aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.annotate.app import PageConfig
from evaluator.humans.annotate.queue import AnnotationQueue
from evaluator.rubrics import RubricRegistry

REGISTRY = RubricRegistry.load(PROJECT_ROOT / "rubrics")
TOKEN = "test-token-0123456789"
RAW_EMAIL = "maria.lopez@example.com"
HOSTILE = {
    "input": '<script>alert("input")</script> my mail is ' + RAW_EMAIL,
    "context": '"><img src=x onerror=alert(1)> The warranty lasts 2 years.',
    "output": "</textarea><b>bold</b> The warranty lasts 2 years & covers water damage on Mars.",
}


def _traces() -> list[dict[str, Any]]:
    """Twelve support questions: even ones answered from the context, odd ones inventing."""
    traces = []
    for i in range(12):
        years = i % 4 + 1
        context = [f"The Model {i} warranty lasts {years} years from the date of purchase.",
                   f"Model {i} batteries are covered for {years * 6} months."]
        output = (f"The Model {i} warranty lasts {years} years from the date of purchase."
                  if i % 2 == 0 else
                  f"Model {i} comes with lifetime accidental-damage repair and a free robot "
                  "butler, delivered by drone within the hour.")
        traces.append({"trace_id": f"t-{i:02d}", "input": f"How long is the Model {i} warranty?",
                       "context": context, "output": output})
    traces.append({"trace_id": "t-hostile", "input": HOSTILE["input"],
                   "context": [HOSTILE["context"]], "output": HOSTILE["output"]})
    return traces


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def judged_store_with_batch(tmp: Path, n: int = 8) -> tuple[Path, str]:
    """(db, batch id): the traces judged for hallucination, then a batch of n exported."""
    traces = tmp / "traces.jsonl"
    traces.write_text("".join(json.dumps(t) + "\n" for t in _traces()), encoding="utf-8")
    db = tmp / "evaluator.duckdb"
    invoke("run", "--traces", str(traces), "--db", str(db), "--sample-rate", "1.0",
           "--rubric", "hallucination", "--json")
    exported = json.loads(invoke("labels", "export", "--rubric", "hallucination", "--n", str(n),
                                 "--out", str(tmp / "batch"), "--db", str(db), "--json"))
    return db, exported["batch_id"]


@pytest.fixture(scope="session")
def annotation_batch(tmp_path_factory) -> tuple[Path, str]:
    """(db, batch id) judged and exported once per session: copy the db before writing to it."""
    return judged_store_with_batch(tmp_path_factory.mktemp("annotate"))


def page_config(db: Path, **options: Any) -> PageConfig:
    queue = AnnotationQueue(db, REGISTRY, lock_timeout_s=options.pop("lock_timeout_s", 10.0))
    return PageConfig(queue, TOKEN, **options)


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def location(self) -> str:
        return self.headers["Location"]


class PageClient:
    """aiohttp's in-process test client (cookies kept), driven from synchronous tests."""

    def __init__(self, app: web.Application):
        self.loop = asyncio.new_event_loop()
        self.client: TestClient = self.loop.run_until_complete(self._start(app))

    @staticmethod
    async def _start(app: web.Application) -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        return client

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        async def call() -> Reply:
            async with self.client.request(method, path, allow_redirects=False, **kwargs) as r:
                return Reply(r.status, await r.text(), dict(r.headers))
        return self.loop.run_until_complete(call())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> Reply:
        return self.request("POST", path, data=data, **kwargs)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()
