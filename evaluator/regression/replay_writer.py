"""How `replay` stores what it judged: in a thread of its own, one write at a time, each batch's
evaluations and judge calls first, then its items marked done (a crash in between only means
those items are judged again on resume; their rows, having the same evaluation ids, are not
stored twice).

A write opens and closes the file, so `evaluator report` can read it in between: 50-200 ms here
(0.3-0.5 s on a loaded machine), most of it fixed whatever the batch's size (the open, the commit,
the checkpoint at close). On the event loop it held every call in flight (ledger p50 at 64 in
flight and 200 ms: 407 ms). Once every item has started (`hold_open`), the file is opened and
what is done is written while the last items are in flight, so after the last one only its own
rows and the close are left: the open and a write after the last item were 0.27-0.76 s of a
3-5 s replay of 640 items at 64 in flight (load 5, issue 23 item 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.core.records import Evaluation
from evaluator.core.rows import JudgeCall
from evaluator.store import Store
from evaluator.store import replay_queries as queries


@dataclass
class ItemResult:
    """One replayed item: how it is marked done, its evaluations and their judge calls."""

    done: queries.ItemDone
    evaluations: list[Evaluation]
    judge_calls: list[JudgeCall] = field(default_factory=list)


class ReplayWriter:
    """Stores one session's finished items in `db`, from one thread of its own (so a store
    held open is used by the thread that opened it)."""

    def __init__(self, db: Path, run_id: str):
        self.db, self.run_id = db, run_id
        self.judge_calls = 0
        """Judge calls behind the stored evaluations, retries included, cached replies excluded."""
        self.cached = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-writer")
        self._writes: list[asyncio.Future[None]] = []
        """Started and not yet seen done, in the order the thread runs them."""
        self._held: Store | None = None

    def busy(self) -> bool:
        """Whether a write is still running; a finished write that failed raises here."""
        while self._writes and self._writes[0].done():
            self._writes.pop(0).result()
        return bool(self._writes)

    def start(self, results: list[ItemResult]) -> None:
        """Store `results` in the thread (call when not busy())."""
        self._writes.append(self._in_thread(self._write, results))

    def hold_open(self, results: list[ItemResult]) -> None:
        """Every item has started: open the file for the writes left (after a running one) and
        store `results` meanwhile."""
        self._writes.append(self._in_thread(self._open_and_write, results))

    async def finish(self, results: list[ItemResult]) -> None:
        """Store the last results and close the file; the first error of a write is raised."""
        try:
            if self._writes:
                await asyncio.wait(self._writes)
            while self._writes:
                self._writes.pop(0).result()
            await self._in_thread(self._write, results)
        finally:
            await self._in_thread(self._close)
            self._thread.shutdown(wait=False)

    def _in_thread(self, work: Callable[..., None], *args: object) -> asyncio.Future[None]:
        return asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _open_and_write(self, results: list[ItemResult]) -> None:
        self._held = Store(self.db)
        self._write(results)

    def _write(self, results: list[ItemResult]) -> None:
        if not results:
            return
        if self._held is not None:
            self._store_results(self._held, results)
            return
        with Store(self.db) as store:
            self._store_results(store, results)

    def _store_results(self, store: Store, results: Sequence[ItemResult]) -> None:
        """The items' evaluations and judge calls, then the items marked done."""
        evaluations = [e for result in results for e in result.evaluations]
        store.write_batch(evaluations=evaluations,
                          judge_calls=[c for result in results for c in result.judge_calls])
        queries.mark_done(store, self.run_id, [result.done for result in results])
        self.judge_calls += sum(e.attempts for e in evaluations if not e.cached)
        self.cached += sum(e.cached for e in evaluations)

    def _close(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.close()
