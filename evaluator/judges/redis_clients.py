"""One redis.asyncio client per event loop: asyncio connections belong to the loop that made them.

A worker process runs its async actors on one loop, so it holds one client; tests and the CLI
that call asyncio.run() more than once get a fresh client per loop. The pool waits for a free
connection rather than failing when every connection is busy (hundreds of calls in flight).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

MAX_CONNECTIONS = 32


class LoopRedis:
    def __init__(self, url: str):
        self.url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The redis.asyncio.Redis of the running loop."""
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            # lazy: redis loads only when a judge uses Redis
            import redis.asyncio

            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=MAX_CONNECTIONS, timeout=10,
                socket_connect_timeout=3, socket_timeout=10)
            with self._lock:
                found = self._clients.setdefault(loop, redis.asyncio.Redis(connection_pool=pool))
        return found
