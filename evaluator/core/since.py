"""The one reading of a `--since` option: a duration before now, or an ISO date/time.

Over evaluations, `--since` always means when they were judged (`created_at`): `report` (text,
JSON, HTML) and `datasets build` (human labels: when imported). `dead-letters --since` is when
the dead letter was stored (it is never judged).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from evaluator.core.errors import ConfigError

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = "a duration before now (30m, 24h, 7d, 2w) or an ISO date/time in UTC (2026-01-31)"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `24h`, `7d`, `2w` before `now`, or an ISO date/time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.fullmatch(text.strip())
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise ConfigError(f"--since {text!r} reaches before year 1: use a shorter duration"
                              " or an ISO date") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: give {SINCE_HELP}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def nothing_since(since: datetime, before: int) -> str:
    """What an empty `--since` result left out."""
    return (f"no evaluations judged since {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({before} "
            f"stored before): give an earlier --since")
