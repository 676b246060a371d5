"""The judge-response cache: replaying unchanged items costs nothing.

Key: sha256 of the judge's identity (model, api_base, parameters, max_tokens, structured-output
mode and label menu), the exact rendered messages and the sample number. Used only when the
call is deterministic (temperature 0 or a fixed seed), and only scored verdicts are stored:
an unusable reply or a failure is asked again next time.

An in-process LRU sits in front of a shared backend: Redis (service mode, entries expire after
the judge's `cache.ttl_s`) or a SQLite file (embedded mode, so a second `evaluator run` or
`evaluator replay` process gets the first one's answers). The file is bounded too: expired
rows are deleted, and past `max_entries` the oldest written go first
(EVALUATOR_JUDGE_CACHE_MAX_ENTRIES). The DuckDB store is not used: it has
a single writer, the sink. A backend that fails is a miss, never a failed evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evaluator.core.records import ClaimVerdict, Trace
from evaluator.core.rows import CACHED
from evaluator.core.usage import Usage
from evaluator.judges.base import JudgeLink, JudgeVerdict, verdict_from
from evaluator.judges.ledger_rows import CallRows
from evaluator.judges.redis_clients import LoopRedis
from evaluator.rubrics import RenderedPrompt, Rubric

log = logging.getLogger(__name__)

REDIS_PREFIX = "evaluator:judge-cache:"
DEFAULT_MEMORY_ENTRIES = 10_000


def is_deterministic(params: Mapping[str, Any]) -> bool:
    return params.get("temperature") == 0 or params.get("seed") is not None


def cache_key(identity: str, messages: Sequence[Mapping[str, Any]], sample: int) -> str:
    digest = hashlib.sha256(identity.encode())
    digest.update(b"\x1f")
    digest.update(json.dumps(messages, ensure_ascii=False, separators=(",", ":"),
                             sort_keys=True).encode())
    digest.update(b"\x1f%d" % sample)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CachedVerdict:
    label: str
    score: float | None
    reasoning: str | None
    raw_reply: str | None
    claims: list[dict[str, Any]] | None = None
    """JSON-ready ClaimVerdicts (entries written before claims existed have none)."""

    def encode(self) -> str:
        # the fields in order, as asdict() gives them, without its deep copy (~0.15 ms an item)
        fields = {"label": self.label, "score": self.score, "reasoning": self.reasoning,
                  "raw_reply": self.raw_reply, "claims": self.claims}
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> CachedVerdict:
        return cls(**json.loads(text))


class CacheBackend(Protocol):
    async def get(self, key: str) -> str | bytes | None: ...

    async def put(self, key: str, value: str, ttl_s: int) -> None: ...


DEFAULT_SQLITE_ENTRIES = 1_000_000
"""About 1-2 GB of verdicts with a real judge's reasoning."""
PURGE_EVERY_PUTS = 1_000
"""The SQLite file is pruned once per this many writes (and when it opens)."""


_Row = tuple[str, str, float]
"""key, value, expires_at"""
_UNWRITTEN: dict[Path, dict[str, _Row]] = {}
"""Rows put but not committed yet, by file, for every SqliteBackend of this process: a read
finds them there (it reads its own writes) without waiting for a writer thread."""
_UNWRITTEN_LOCK = threading.Lock()


class SqliteBackend:
    """A SQLite file shared by the processes of one machine (WAL mode: readers never block).

    Writes never hold the caller: a put is handed to a writer thread of this backend's own,
    which commits every put that arrived meanwhile in one transaction, and returns at once
    (awaiting each commit added ~4 ms to every judged item at p50 and ~40 ms at p95 with 64 in
    flight: the writer waited for the busy event loop's GIL). Until it is committed, a read of
    the same file in this process finds the row in `_UNWRITTEN`; other processes see it a
    commit later, and the interpreter waits for the writer at exit. Reads (a few microseconds
    from the page cache) use a connection of their own, so they never wait for a write.
    `flush()` waits until every put so far is in the file.

    Bounded: every PURGE_EVERY_PUTS writes (or a tenth of `max_entries`, if fewer) and at open,
    expired rows are deleted, then the oldest written rows beyond `max_entries`. `expired` and
    `evicted` count the rows this process deleted."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time,
                 max_entries: int = DEFAULT_SQLITE_ENTRIES):
        if max_entries < 1:
            raise ValueError(f"the judge cache holds at least 1 entry, not {max_entries}")
        self.path = Path(path)
        self._clock = clock
        self.max_entries = max_entries
        self._purge_every = max(1, min(PURGE_EVERY_PUTS, max_entries // 10))
        self._puts = 0
        self.expired = 0
        self.evicted = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS judge_cache (key TEXT PRIMARY KEY,"
                           " value TEXT NOT NULL, expires_at REAL NOT NULL)")
        self._conn.execute("CREATE INDEX IF NOT EXISTS judge_cache_expiry ON judge_cache (expires_at)")
        self._purge()
        self._reader = self._connect()
        self._reading = threading.Lock()
        with _UNWRITTEN_LOCK:
            self._unwritten = _UNWRITTEN.setdefault(self.path.resolve(), {})
        self._pending: list[_Row] = []
        self._batch: Future[None] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-cache")
        self._warned_at = float("-inf")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5.0, check_same_thread=False,
                               isolation_level=None)

    async def get(self, key: str) -> str | None:
        row = self._unwritten.get(key)
        if row is None:
            with self._reading:
                row = self._reader.execute("SELECT key, value, expires_at FROM judge_cache"
                                           " WHERE key = ?", (key,)).fetchone()
        return row[1] if row and row[2] > self._clock() else None

    async def put(self, key: str, value: str, ttl_s: int) -> None:
        row = (key, value, self._clock() + ttl_s)
        with _UNWRITTEN_LOCK:
            self._unwritten[key] = row
            self._pending.append(row)
            if self._batch is None:
                self._batch = self._writer.submit(self._write_pending)

    def flush(self) -> None:
        """Wait until every put so far is in the file (the writer takes its work in order)."""
        self._writer.submit(lambda: None).result()

    def _write_pending(self) -> None:
        """The writer thread: commit every put pending now in one transaction. A batch that
        cannot be written is a warning: its rows are asked of the judge again next time."""
        with _UNWRITTEN_LOCK:
            rows, self._pending, self._batch = self._pending, [], None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO judge_cache VALUES (?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            before, self._puts = self._puts, self._puts + len(rows)
            if self._puts // self._purge_every > before // self._purge_every:
                self._purge()
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned_at > 10.0:
                self._warned_at = now
                log.warning("judge cache file %s could not be written (%r): %d verdicts not "
                            "cached", self.path, exc, len(rows))
        finally:
            with _UNWRITTEN_LOCK:
                for row in rows:
                    if self._unwritten.get(row[0]) is row:
                        del self._unwritten[row[0]]

    def _purge(self) -> None:
        """Delete the expired rows, then the oldest beyond max_entries (rows written with one
        TTL expire in the order they were written). At open, then on the writer thread."""
        self.expired += self._conn.execute("DELETE FROM judge_cache WHERE expires_at <= ?",
                                           (self._clock(),)).rowcount
        (count,) = self._conn.execute("SELECT count(*) FROM judge_cache").fetchone()
        if count > self.max_entries:
            self.evicted += self._conn.execute(
                "DELETE FROM judge_cache WHERE key IN (SELECT key FROM judge_cache"
                " ORDER BY expires_at LIMIT ?)", (count - self.max_entries,)).rowcount


class RedisBackend:
    def __init__(self, redis: LoopRedis):
        self._redis = redis

    async def get(self, key: str) -> bytes | None:
        return await self._redis.client().get(REDIS_PREFIX + key)

    async def put(self, key: str, value: str, ttl_s: int) -> None:
        await self._redis.client().set(REDIS_PREFIX + key, value, ex=ttl_s)


class JudgeCache:
    """An LRU of recent verdicts in front of an optional shared backend."""

    def __init__(self, backend: CacheBackend | None = None,
                 max_entries: int = DEFAULT_MEMORY_ENTRIES):
        self.backend = backend
        self.max_entries = max_entries
        self._memory: OrderedDict[str, CachedVerdict] = OrderedDict()
        self._lock = threading.Lock()
        self._warned_at = float("-inf")

    async def get(self, key: str) -> CachedVerdict | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                return found
        if self.backend is None:
            return None
        try:
            text = await self.backend.get(key)
            found = None if text is None else CachedVerdict.decode(text)
        except Exception as exc:  # a broken backend is a miss
            self._warn(exc)
            return None
        if found is not None:
            self._remember(key, found)
        return found

    async def put(self, key: str, verdict: CachedVerdict, ttl_s: int) -> None:
        self._remember(key, verdict)
        if self.backend is not None:
            try:
                await self.backend.put(key, verdict.encode(), ttl_s)
            except Exception as exc:
                self._warn(exc)

    def _remember(self, key: str, verdict: CachedVerdict) -> None:
        with self._lock:
            self._memory[key] = verdict
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 10.0:
            self._warned_at = now
            log.warning("judge cache backend failed (%r): treated as a miss", exc)


class CachedJudge:
    """The cache wrapper: a hit is a scored verdict with one `cached` ledger row (cost 0);
    a miss asks `inner` and stores its verdict if scored. `identity(labels)` is the judge's
    request identity for a label menu (LLMJudge.identity)."""

    def __init__(self, inner: JudgeLink, identity: Callable[[tuple[str, ...], bool], str],
                 cache: JudgeCache, rows: CallRows, ttl_s: int):
        self.inner = inner
        self.name = inner.name
        self.config_hash = inner.config_hash
        self.cache = cache
        self._identity = identity
        self._rows = rows
        self._ttl_s = ttl_s

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0, may_defer: bool = False) -> JudgeVerdict:
        identity = self._identity(tuple(rubric.labels), rubric.claims)
        started = time.perf_counter()
        key = cache_key(identity, prompt.messages, sample)
        found = await self.cache.get(key)
        if found is not None:
            row = self._rows.row(sample, 0, CACHED, (time.perf_counter() - started) * 1000,
                                 Usage(input_tokens=0, output_tokens=0, cost_usd=0.0), cached=True)
            claims = None if found.claims is None else [ClaimVerdict.model_validate(claim)
                                                        for claim in found.claims]
            return verdict_from([row], status="scored", label=found.label, score=found.score,
                                reasoning=found.reasoning, raw_reply=found.raw_reply, cached=True,
                                claims=claims)
        verdict = await self.inner.judge(rubric, trace, prompt, sample=sample, may_defer=may_defer)
        if verdict.status == "scored":
            checked = None if verdict.claims is None else [claim.model_dump()
                                                           for claim in verdict.claims]
            await self.cache.put(key, CachedVerdict(verdict.label or "", verdict.score,
                                                    verdict.reasoning, verdict.raw_reply, checked),
                                 self._ttl_s)
        return verdict
