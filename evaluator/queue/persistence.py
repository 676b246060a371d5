"""Does Redis keep the queue and the results stream through a restart?

Service mode's "no loss" holds only while Redis persists what it holds: a Redis restarted
without persistence forgets the queued work messages, the results the sink has not committed
yet and the consumer group. Every service process (worker, sink, ingest) checks at start and
warns once, loudly, when it cannot count on that. A Redis whose CONFIG command is disabled or
not permitted (managed services) cannot be checked: that is said at INFO, not guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

PERSISTENT, SNAPSHOTS, NONE, UNKNOWN = "append-only", "snapshots", "none", "unknown"


@dataclass(frozen=True)
class Persistence:
    """How Redis persists: `mode` is one of the constants above; `detail` is what it said."""

    mode: str
    detail: str

    @property
    def safe(self) -> bool:
        return self.mode == PERSISTENT


def redis_persistence(client) -> Persistence:
    """Read `appendonly` and `save` with CONFIG GET (UNKNOWN when CONFIG is not allowed)."""
    # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
    import redis

    try:
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
    except (redis.ResponseError, redis.AuthenticationError) as exc:
        return Persistence(UNKNOWN, f"CONFIG GET refused: {exc}")
    if appendonly == "yes":
        return Persistence(PERSISTENT, "appendonly yes")
    if save.strip():
        return Persistence(SNAPSHOTS, f"appendonly no, save {save!r}")
    return Persistence(NONE, "appendonly no, save ''")


def _config(client, name: str) -> str:
    value = client.config_get(name).get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def warn_if_not_persistent(client, process: str) -> Persistence:
    """Check once (at a process's start) and log what a restart of this Redis would lose."""
    try:
        found = redis_persistence(client)
    except Exception as exc:  # Redis down at start: the process's own connection reports it
        log.info("%s: could not check Redis persistence: %r", process, exc)
        return Persistence(UNKNOWN, repr(exc))
    if found.mode == UNKNOWN:
        log.info("%s: could not check Redis persistence (%s); service mode loses nothing "
                 "through a Redis restart only with appendonly yes", process, found.detail)
    elif found.mode == SNAPSHOTS:
        log.warning("%s: REDIS PERSISTS BY SNAPSHOTS ONLY (%s): a Redis crash loses every work "
                    "message and result written since the last snapshot. Set `appendonly yes` "
                    "(CONFIG SET appendonly yes, and in redis.conf) for no loss.", process,
                    found.detail)
    elif found.mode == NONE:
        log.warning("%s: REDIS HAS NO PERSISTENCE (%s): a Redis restart loses every queued work "
                    "message, every result the sink has not committed, and the sink's consumer "
                    "group. Set `appendonly yes` (CONFIG SET appendonly yes, and in redis.conf) "
                    "for no loss.", process, found.detail)
    return found
