"""The in-flight limit: at most `limits.max_in_flight` requests of one judge at once per event
loop (asyncio objects belong to one loop, so each loop gets its own semaphore)."""

from __future__ import annotations

import asyncio
import threading
import weakref

from evaluator.judges.attempt import Attempt, Sender
from evaluator.judges.transport import Reply


class InFlightLimit:
    """A Sender that holds a slot while the rest of the chain runs."""

    def __init__(self, inner: Sender, max_in_flight: int):
        self.inner = inner
        self.max_in_flight = max_in_flight
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    async def send(self, attempt: Attempt) -> Reply:
        async with self._slots_for_this_loop():
            return await self.inner.send(attempt)

    def _slots_for_this_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            with self._lock:
                slots = self._slots.setdefault(loop, asyncio.Semaphore(self.max_in_flight))
        return slots
