"""Read-side SQL for dead letters: the payloads that could not become traces, and why.

A filter selects by when the dead letter was stored (`created_at`, UTC) and by its source: a
file path matches the file itself and every `path:line` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from evaluator.core.records import DeadLetter

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store


@dataclass(frozen=True)
class DeadLetterFilter:
    since: datetime | None = None
    """Only dead letters stored at or after this moment."""
    source: str | None = None
    """Only dead letters of this source: exactly it, or `<source>:<line>`."""

    def sql(self) -> str:
        return ("($since IS NULL OR created_at >= $since)"
                " AND ($source IS NULL OR source = $source"
                " OR starts_with(source, $source || ':'))")

    def params(self) -> dict[str, Any]:
        return {"since": self.since, "source": self.source}


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    count: int
    field: str | None
    """The field at fault, when every dead letter with this reason names the same one."""

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "count": self.count, "field": self.field}


def dead_letter_total(store: Store, where: DeadLetterFilter) -> int:
    [(total,)] = store.conn.execute(f"SELECT count(*) FROM dead_letters WHERE {where.sql()}",
                                    where.params()).fetchall()
    return total


def dead_letter_reasons(store: Store, where: DeadLetterFilter,
                        limit: int = 10) -> list[ReasonCount]:
    """The `limit` most frequent reasons, most frequent first."""
    rows = store.conn.execute(
        "SELECT error, count(*) AS n, CASE WHEN count(DISTINCT field) = 1 THEN any_value(field)"
        f" END FROM dead_letters WHERE {where.sql()} GROUP BY error ORDER BY n DESC, error"
        " LIMIT $limit", {**where.params(), "limit": limit}).fetchall()
    return [ReasonCount(reason, count, field) for reason, count, field in rows]


def dead_letters(store: Store, where: DeadLetterFilter,
                 limit: int | None = None) -> list[DeadLetter]:
    """Newest first."""
    sql = ("SELECT dead_letter_id, source, error, field, payload, created_at FROM dead_letters"
           f" WHERE {where.sql()} ORDER BY created_at DESC, source, dead_letter_id")
    params = where.params()
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = limit
    return [
        DeadLetter(dead_letter_id=row[0], source=row[1], error=row[2], field=row[3],
                   payload=row[4], created_at=row[5].astimezone(UTC))
        for row in store.conn.execute(sql, params).fetchall()
    ]
