"""The judge-response cache: deterministic calls only, keyed on everything that shapes the reply,
shared through SQLite (CLI processes) or Redis (workers), looked up before the rate limiter;
replaying an unchanged dataset makes zero HTTP calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from evaluator.core.retry import Backoff
from evaluator.core.settings import Settings
from evaluator.judges.base import JudgeClient
from evaluator.judges.cache import (
    REDIS_PREFIX,
    CachedVerdict,
    JudgeCache,
    RedisBackend,
    SqliteBackend,
    cache_key,
)
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.redis_clients import LoopRedis
from evaluator.judges.runtime import JudgeRuntime
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded
from tests.support.judging import KEY, KEY_ENV, judge_all, judge_config, prompt, write_judge
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
CACHE_ENV = "EVALUATOR_JUDGE_CACHE"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def make_judge(server: OpenAIServer, runtime: JudgeRuntime, **fields) -> JudgeClient:
    return build_llm_judge(judge_config(server, **fields), runtime, backoff=Backoff(base_s=0.01))


def test_the_key_covers_identity_messages_and_sample() -> None:
    messages = prompt().messages
    base = cache_key("judge-a", messages, 0)
    assert base == cache_key("judge-a", [dict(m) for m in messages], 0)
    assert base != cache_key("judge-b", messages, 0)
    assert base != cache_key("judge-a", prompt(note="x").messages, 0)
    assert base != cache_key("judge-a", messages, 1)


def test_a_repeated_call_is_a_free_marked_hit_with_a_ledger_row() -> None:
    with OpenAIServer() as server:
        judge = make_judge(server, JudgeRuntime(cache=JudgeCache()),
                           prices={"input_per_mtok": 1, "output_per_mtok": 2})
        first = judge_all(judge, [prompt("supported")])[0]
        second = judge_all(judge, [prompt("supported")])[0]
        assert server.stats.total == 1
    assert (first.cached, first.attempts) == (False, 1) and first.usage.cost_usd > 0
    assert (second.status, second.label) == ("scored", "supported")
    assert second.reasoning == first.reasoning
    assert (second.cached, second.attempts, second.usage.cost_usd) == (True, 0, 0.0)
    assert second.usage.input_tokens == second.usage.output_tokens == 0
    [row] = second.calls
    assert (row.status, row.cached, row.usage.cost_usd, row.attempt) == ("cached", True, 0.0, 0)


@pytest.mark.parametrize("params", [{"temperature": 0.7}, {}])
def test_a_call_that_is_not_deterministic_is_never_cached(params: dict) -> None:
    with OpenAIServer() as server:
        judge = make_judge(server, JudgeRuntime(cache=JudgeCache()), params=params)
        judge_all(judge, [prompt()] * 1)
        judge_all(judge, [prompt()] * 1)
        assert server.stats.total == 2


def test_a_fixed_seed_makes_a_call_cacheable_and_the_config_can_turn_caching_off() -> None:
    with OpenAIServer() as server:
        runtime = JudgeRuntime(cache=JudgeCache())
        seeded = make_judge(server, runtime, params={"temperature": 1, "seed": 7})
        judge_all(seeded, [prompt()])
        assert judge_all(seeded, [prompt()])[0].cached
        off = make_judge(server, runtime, name="off", cache={"enabled": False})
        judge_all(off, [prompt()])
        assert not judge_all(off, [prompt()])[0].cached


def test_unusable_replies_and_failures_are_asked_again() -> None:
    with OpenAIServer(faults=["off_menu", "500", "ok", "ok"]) as server:
        judge = make_judge(server, JudgeRuntime(cache=JudgeCache()), limits={"max_attempts": 1})
        verdicts = [judge_all(judge, [prompt()])[0] for _ in range(4)]
    assert [(v.status, v.cached) for v in verdicts] == [
        ("unscored", False), ("error", False), ("scored", False), ("scored", True)]


def test_the_cache_is_looked_up_before_the_rate_limiter() -> None:
    with OpenAIServer() as server:
        judge = make_judge(server, JudgeRuntime(cache=JudgeCache()),
                           limits={"requests_per_minute": 1})
        judge_all(judge, [prompt()])
        verdict = judge_all(judge, [prompt()])[0]  # the next booking would be a minute away
    assert verdict.cached


def test_a_sqlite_file_serves_another_runtime_until_the_entry_expires(tmp_path: Path) -> None:
    path, now = tmp_path / "judge.sqlite", [1000.0]

    def runtime() -> JudgeRuntime:
        return JudgeRuntime(cache=JudgeCache(SqliteBackend(path, clock=lambda: now[0])))

    with OpenAIServer() as server:
        judge_all(make_judge(server, runtime(), cache={"ttl_s": 60}), [prompt()])
        assert judge_all(make_judge(server, runtime()), [prompt()])[0].cached
        now[0] += 61
        assert not judge_all(make_judge(server, runtime()), [prompt()])[0].cached
        assert server.stats.total == 2


def test_the_sqlite_file_deletes_expired_rows_and_keeps_at_most_max_entries(tmp_path: Path) -> None:
    """Issue 20.4: the file never grows past its cap, expired rows go, and the newest stay."""
    import asyncio
    import sqlite3

    path, now = tmp_path / "judge.sqlite", [1000.0]
    backend = SqliteBackend(path, clock=lambda: now[0], max_entries=50)

    async def fill() -> None:
        for i in range(30):
            await backend.put(f"short-{i}", "v", ttl_s=10)
        for i in range(100):
            await backend.put(f"long-{i}", "v", ttl_s=1000)
            now[0] += 0.01  # later writes expire later

    asyncio.run(fill())
    backend.flush()  # the file itself is read below

    def keys() -> set[str]:
        return {key for (key,) in sqlite3.connect(path).execute("SELECT key FROM judge_cache")}

    # purged every 5 writes (a tenth of the cap): never more than the cap plus 4 rows
    assert len(keys()) <= 54
    now[0] += 20  # the short-lived ones expire
    asyncio.run(backend.put("one-more", "v", ttl_s=1000))
    backend.flush()
    reopened = SqliteBackend(path, clock=lambda: now[0], max_entries=50)  # purges at open
    assert len(keys()) == 50
    assert not any(key.startswith("short-") for key in keys())
    assert {f"long-{i}" for i in range(51, 100)} | {"one-more"} == keys()  # the newest written stay
    assert backend.expired + backend.evicted + reopened.expired + reopened.evicted == 131 - 50
    assert asyncio.run(reopened.get("long-99")) == "v"
    assert asyncio.run(reopened.get("long-0")) is None


def test_the_sqlite_file_is_written_off_the_event_loop_in_batches(tmp_path: Path) -> None:
    """Issue 23.4: a put never runs SQLite on the caller's loop, nor waits for the commit (a
    commit there held every call in flight; awaiting one held the item ~4 ms at p50, ~40 ms at
    p95); puts that arrive while one is being written are committed together; what is not
    committed yet is read back all the same, by any backend of the file in this process."""
    import asyncio
    import threading

    path = tmp_path / "judge.sqlite"
    backend = SqliteBackend(path)
    writes: list[tuple[str, str]] = []
    backend._conn.set_trace_callback(
        lambda sql: writes.append((threading.current_thread().name, sql)))
    started = threading.Event()
    release = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    backend._writer.submit(hold)  # the writer thread is busy: nothing gets committed yet
    started.wait(10)

    async def put_many() -> str:
        await asyncio.gather(*(backend.put(f"k{i}", "v", ttl_s=60) for i in range(50)))
        return threading.current_thread().name

    loop_thread = asyncio.run(put_many())
    assert not writes, "the puts returned before any commit"
    other = SqliteBackend(path)
    assert all(asyncio.run(other.get(f"k{i}")) == "v" for i in range(50))
    release.set()
    backend.flush()
    commits = [thread for thread, sql in writes if sql == "COMMIT"]
    assert len(commits) == 1 and loop_thread not in {thread for thread, _ in writes}
    import sqlite3
    assert sqlite3.connect(path).execute("SELECT count(*) FROM judge_cache").fetchone() == (50,)


def test_the_settings_bound_the_sqlite_cache(tmp_path: Path) -> None:
    settings = Settings.from_env(db_path=tmp_path / "e.duckdb", judge_cache="",
                                 judge_cache_max_entries=7, redis_url=None)
    cache = JudgeRuntime.from_settings(settings).cache
    assert isinstance(cache.backend, SqliteBackend)
    assert cache.backend.max_entries == 7


@pytest.mark.redis
def test_redis_serves_every_worker_with_a_ttl(redis_url: str) -> None:
    with OpenAIServer() as server:
        def runtime() -> JudgeRuntime:
            return JudgeRuntime(redis_url, JudgeCache(RedisBackend(LoopRedis(redis_url))))

        judge_all(make_judge(server, runtime(), cache={"ttl_s": 600}), [prompt()])
        again = judge_all(make_judge(server, runtime()), [prompt()])[0]
        assert server.stats.total == 1
    assert again.cached
    client = redis.Redis.from_url(redis_url)
    [key] = client.keys(f"{REDIS_PREFIX}*")
    assert 0 < client.ttl(key) <= 600


def test_the_environment_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def runtime() -> JudgeRuntime:
        return JudgeRuntime.from_settings(Settings.from_env())

    monkeypatch.delenv("EVALUATOR_REDIS_URL", raising=False)
    monkeypatch.setenv("EVALUATOR_DB", str(tmp_path / "db" / "e.duckdb"))
    monkeypatch.delenv(CACHE_ENV)
    cache = runtime().cache
    assert isinstance(cache.backend, SqliteBackend)
    assert cache.backend.path == tmp_path / "db" / ".evaluator-cache" / "judge.sqlite"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert runtime().cache is None
    monkeypatch.setenv(CACHE_ENV, "memory")
    assert runtime().cache.backend is None


def test_the_cache_file_sits_next_to_the_database_a_run_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evaluator run --db elsewhere/x.duckdb` (and a replay's --db) keeps its cache beside that
    file, not beside EVALUATOR_DB's (the working directory by default)."""
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("EVALUATOR_DB", str(tmp_path / "default" / "evaluator.duckdb"))
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, 2)
    built: list[JudgeRuntime] = []
    real = JudgeRuntime.from_settings.__func__  # type: ignore[attr-defined]

    def from_settings(cls, *args, **kwargs):
        built.append(real(cls, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(JudgeRuntime, "from_settings", classmethod(from_settings))
    run_embedded(traces, tmp_path / "elsewhere" / "x.duckdb", "offline", 1.0,
                 settings=Settings.from_env())
    # the offline judge never caches: the file is not even created, only named
    assert not (tmp_path / "elsewhere" / ".evaluator-cache").exists()
    assert built[0].cache.backend.path == tmp_path / "elsewhere" / ".evaluator-cache" / "judge.sqlite"
    assert not (tmp_path / "default").exists()


def write_traces(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"trace_id": f"c-{i:03d}", "input": f"What does plan {i} include?",
                                  "context": [f"Plan {i} includes {i} GB."],
                                  "output": f"Plan {i} includes {i} GB.",
                                  "expected": f"{i} GB."}) + "\n")


def test_a_second_run_in_another_process_makes_zero_judge_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_file = tmp_path / "cache" / "judge.sqlite"
    monkeypatch.setenv(CACHE_ENV, str(cache_file))
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, 10)
    with OpenAIServer() as server:
        write_judge(tmp_path / "judges", judge_config(server, name="local-test"))
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(tmp_path / "judges"))
        first = run_embedded(traces, tmp_path / "first.duckdb", "local-test", 1.0,
                             settings=Settings.from_env())
        calls = server.stats.total
        assert calls == first.evaluations == 50  # 10 traces x 5 rubrics
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-m", "evaluator", "run", "--traces", str(traces), "--judge",
             "local-test", "--sample-rate", "1", "--db", str(tmp_path / "second.duckdb"), "--json",
             "--no-preflight"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert server.stats.total == calls, "not one new HTTP request"
    with Store(tmp_path / "second.duckdb", read_only=True) as store:
        evaluations = store.evaluations()
        ledger = store.conn.execute("SELECT count(*), count(*) FILTER (WHERE cached),"
                                    " sum(cost_usd) FROM judge_calls").fetchone()
    assert len(evaluations) == 50 and all(e.cached and e.status == "scored" for e in evaluations)
    assert all(e.usage.cost_usd == 0.0 and e.attempts == 0 for e in evaluations)
    assert ledger == (50, 50, 0.0)


def test_a_cached_verdict_is_stored_as_the_same_json_as_before():
    """encode() writes the fields in order without dataclasses.asdict's deep copy (issue 23
    item 4): the bytes stored in the cache file are unchanged, and they decode back."""
    import dataclasses

    for verdict in (CachedVerdict("relevant", 1.0, "why ✓", '{"label": "relevant"}'),
                    CachedVerdict("supported", None, None, None,
                                  [{"claim": "a", "verdict": "supported", "evidence": None}])):
        assert verdict.encode() == json.dumps(dataclasses.asdict(verdict), ensure_ascii=False,
                                              separators=(",", ":"))
        assert CachedVerdict.decode(verdict.encode()) == verdict
