"""Panels (several judges) and repeat judging (k samples): aggregation, stability, kept
disagreements, the ledger, and the report's repeat-disagreement rate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator.core.errors import ConfigError
from evaluator.core.records import Trace
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.cache import JudgeCache
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_judge, load_judge
from evaluator.judges.panel import PanelJudge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.monitoring.report import database_report
from evaluator.rubrics import RenderedPrompt, Rubric
from evaluator.store import Store
from evaluator.worker.pipeline import evaluate_batch
from tests.support import openai_server
from tests.support.judging import (
    KEY,
    KEY_ENV,
    judge_all,
    judge_config,
    published_rubric,
    write_judge,
)
from tests.support.openai_server import OpenAIServer

TEXT = {"temperature": 0, "structured_output": "text"}
PLAIN = RenderedPrompt(messages=({"role": "user", "content": "Judge this."},), prompt_hash="p")
THREE = Rubric(criterion="relevance", version=1, description="three levels",
               labels={"relevant": 1.0, "partly": 0.5, "irrelevant": 0.0}, pass_threshold=0.5,
               template_source="", content_hash="1" * 64)


class SeededServer(OpenAIServer):
    """Answers the menu's label at index seed % len(menu): samples with seeds disagree."""

    def _choose_label(self, body: dict[str, Any], messages: list[Any]) -> str:
        menu = openai_server._label_enum(body)[1]
        return menu[int(body.get("seed") or 0) % len(menu)]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def three_servers() -> Iterator[list[OpenAIServer]]:
    labels = ["supported", "supported", "unsupported"]
    servers = [OpenAIServer(default_label=label).start() for label in labels]
    yield servers
    for server in servers:
        server.stop()


def panel(tmp_path: Path, servers: list[OpenAIServer], **fields: Any) -> PanelJudge:
    names = []
    for i, server in enumerate(servers):
        names.append(f"member-{i}")
        write_judge(tmp_path, judge_config(server, name=names[-1], params=TEXT,
                                           prices={"input_per_mtok": 1, "output_per_mtok": 1}))
    (tmp_path / "panel.yaml").write_text(json.dumps({"kind": "panel", "panel": names, **fields}))
    judge = load_judge("panel", tmp_path, runtime=JudgeRuntime())
    assert isinstance(judge, PanelJudge)
    return judge


def test_majority_keeps_the_disagreement_and_the_ledger(
        tmp_path: Path, three_servers: list[OpenAIServer]) -> None:
    verdict = judge_all(panel(tmp_path, three_servers), [PLAIN])[0]
    assert (verdict.status, verdict.label, verdict.score) == ("scored", "supported", 1.0)
    assert verdict.stability == pytest.approx(2 / 3)
    assert verdict.reasoning.startswith("majority of 3 usable samples out of 3: supported 2, "
                                        "unsupported 1.")
    samples = json.loads(verdict.raw_reply)
    assert [(s["judge"], s["label"]) for s in samples] == [
        ("member-0", "supported"), ("member-1", "supported"), ("member-2", "unsupported")]
    assert [c.judge for c in verdict.calls] == ["member-0", "member-1", "member-2"]
    assert verdict.attempts == 3 and verdict.usage.cost_usd == pytest.approx(
        sum(c.usage.cost_usd for c in verdict.calls))


def test_a_tie_goes_to_the_stricter_label(tmp_path: Path,
                                          three_servers: list[OpenAIServer]) -> None:
    verdict = judge_all(panel(tmp_path, three_servers[1:]), [PLAIN])[0]
    assert (verdict.label, verdict.score, verdict.stability) == ("unsupported", 0.0, 0.5)


def test_mean_scores_and_picks_the_nearest_label(tmp_path: Path,
                                                 three_servers: list[OpenAIServer]) -> None:
    verdict = judge_all(panel(tmp_path, three_servers, aggregate="mean"), [PLAIN])[0]
    assert verdict.label == "supported" and verdict.score == pytest.approx(2 / 3)
    assert verdict.stability == pytest.approx(2 / 3)


def test_the_mean_label_may_be_one_no_sample_chose(tmp_path: Path) -> None:
    with OpenAIServer(default_label="relevant") as high, \
            OpenAIServer(default_label="irrelevant") as low:
        verdict = judge_all(panel(tmp_path, [high, low], aggregate="mean"), [PLAIN], THREE)[0]
    assert (verdict.label, verdict.score, verdict.stability) == ("partly", 0.5, 0.0)


def test_repeat_samples_of_one_judge_use_offset_seeds_and_are_cached_each() -> None:
    with SeededServer() as server:
        config = judge_config(server, params={"temperature": 0.9, "seed": 10}, samples=3)
        runtime = JudgeRuntime(cache=JudgeCache())
        judge = build_judge(config, runtime=runtime)
        first = judge_all(judge, [PLAIN])[0]
        second = judge_all(judge, [PLAIN])[0]
        assert server.stats.total == 3
    assert (first.label, first.stability) == ("supported", pytest.approx(2 / 3)), first.raw_reply
    assert sorted(c.sample for c in first.calls) == [0, 1, 2]
    assert (second.label, second.stability, second.cached) == (first.label, first.stability, True)
    assert second.usage.cost_usd == 0.0 and second.attempts == 0


def test_samples_per_rubric(tmp_path: Path) -> None:
    with SeededServer() as server:
        config = judge_config(server, params={"temperature": 0, "seed": 0},
                              samples_by_rubric={"hallucination": 2})
        judge = build_judge(config, runtime=JudgeRuntime())
        repeated = judge_all(judge, [PLAIN])[0]
        once = judge_all(judge, [PLAIN], THREE)[0]
        assert server.stats.total == 3
    assert repeated.stability == 0.5 and len(repeated.calls) == 2
    assert once.stability is None and once.raw_reply.startswith("{"), "a plain verdict"


def test_no_usable_sample_is_unscored_or_error_with_every_reason(
        tmp_path: Path, three_servers: list[OpenAIServer]) -> None:
    three_servers[0].set_faults({"garbage": 1.0})
    three_servers[1].set_faults({"400": 1.0})
    three_servers[2].set_faults({"400": 1.0})
    verdict = judge_all(panel(tmp_path, three_servers), [PLAIN])[0]
    assert (verdict.status, verdict.label, verdict.stability) == ("unscored", None, None)
    assert verdict.reason.startswith("no usable verdict from the 3 samples (member-0#0: unscored")
    assert "member-2#0: error: judge call rejected" in verdict.reason
    three_servers[0].set_faults({"400": 1.0})
    assert judge_all(panel(tmp_path, three_servers), [PLAIN])[0].status == "error"


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "panel"}, "needs a 'panel' list"),
    ({"kind": "panel", "panel": ["nested"]}, "must be a single judge"),
    ({"kind": "panel", "panel": ["offline"], "samples": 3}, "deterministic"),
    ({"kind": "offline", "samples": 2}, "deterministic"),
])
def test_panel_config_errors(tmp_path: Path, fields: dict, message: str) -> None:
    (tmp_path / "nested.yaml").write_text(json.dumps({"kind": "panel", "panel": ["offline"]}))
    (tmp_path / "offline.yaml").write_text(json.dumps({"kind": "offline", "params": {}}))
    (tmp_path / "bad.yaml").write_text(json.dumps(fields))
    with pytest.raises(ConfigError, match=message):
        load_judge("bad", tmp_path, runtime=JudgeRuntime())


def test_stability_and_the_ledger_reach_the_store_and_the_report(
        tmp_path: Path, three_servers: list[OpenAIServer]) -> None:
    judge = panel(tmp_path, three_servers)
    items = [WorkItem(Trace(trace_id=f"t{i}", output="Paris."), SampleDecision(True, "random", 1))
             for i in range(4)]
    rubric = published_rubric()
    for server, label in zip(three_servers, ["factual", "factual", "hallucinated"], strict=True):
        server.default_label = label
    batch = asyncio.run(evaluate_batch(items, [rubric], judge, run_id="r"))
    db = tmp_path / "panel.duckdb"
    with Store(db) as store:
        written = store.write_batch(batch.evaluations, judge_calls=batch.judge_calls)
        assert (written.evaluations, written.judge_calls) == (4, 12)
        assert [e.stability for e in store.evaluations()] == [pytest.approx(2 / 3)] * 4
    report = database_report(db).to_dict()
    assert report["repeat_agreement"] == [{
        "rubric": "hallucination", "repeated": 4, "disagreeing": 4,
        "mean_stability": pytest.approx(2 / 3), "disagreement_rate": 1.0}]
    by_judge = {row["key"]: row for row in report["judge_spend"]["judge"]}
    assert set(by_judge) == {"member-0", "member-1", "member-2"}
    assert all(row["calls"] == 4 and row["spend"].startswith("$") for row in by_judge.values())


def test_a_panel_hash_changes_with_its_members(tmp_path: Path,
                                               three_servers: list[OpenAIServer]) -> None:
    first = panel(tmp_path, three_servers).config_hash
    assert panel(tmp_path, three_servers, aggregate="mean").config_hash != first
    write_judge(tmp_path, JudgeConfig(name="member-0", model="openai/other"))
    assert load_judge("panel", tmp_path, runtime=JudgeRuntime()).config_hash != first
