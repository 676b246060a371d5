"""What `evaluator dead-letters` shows: how many payloads were rejected, the most common reasons,
and the latest ones (masked, as stored)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evaluator.core.records import DeadLetter
from evaluator.store import Store
from evaluator.store.dead_letter_queries import (
    DeadLetterFilter,
    ReasonCount,
    dead_letter_reasons,
    dead_letter_total,
    dead_letters,
)

MAX_PREVIEW_CHARS = 200


@dataclass(frozen=True)
class DeadLetterReport:
    db: Path
    where: DeadLetterFilter
    total: int
    reasons: list[ReasonCount]
    latest: list[DeadLetter]

    def describe(self) -> str:
        """One line: how many, of what."""
        parts = [f"{self.total} dead letter{'s' if self.total != 1 else ''} in {self.db}"]
        if self.where.source is not None:
            parts.append(f"from {self.where.source}")
        if self.where.since is not None:
            parts.append(f"stored since {self.where.since:%Y-%m-%d %H:%M:%S} UTC")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": str(self.db),
            "since": None if self.where.since is None else self.where.since.isoformat(),
            "source": self.where.source,
            "total": self.total,
            "reasons": [reason.to_dict() for reason in self.reasons],
            "dead_letters": [dead.model_dump(mode="json") for dead in self.latest],
        }


def read_dead_letters(db_path: Path, since: datetime | None = None, source: str | None = None,
                      limit: int = 20, top: int = 10) -> DeadLetterReport:
    """The dead letters of a store matching `since` and `source`: their count, the `top`
    reasons and the `limit` latest."""
    where = DeadLetterFilter(since, source)
    with Store(db_path, read_only=True) as store:
        return DeadLetterReport(Path(db_path), where, dead_letter_total(store, where),
                                dead_letter_reasons(store, where, top),
                                dead_letters(store, where, limit))


def top_reason_lines(reasons: Counter, top: int = 3) -> list[str]:
    """The summary lines of a run's or an ingest's dead letters (none when there are none)."""
    if not reasons:
        return []
    shown = reasons.most_common(top)
    rest = sum(reasons.values()) - sum(count for _, count in shown)
    lines = ["dead letters, top reasons (all of them: evaluator dead-letters):"]
    lines += [f"  {count:>6}  {preview(reason)}" for reason, count in shown]
    if rest:
        lines.append(f"  {rest:>6}  (other reasons)")
    return lines


def preview(text: str, limit: int = MAX_PREVIEW_CHARS) -> str:
    """One line of at most `limit` characters."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[:limit - 3] + "..."
