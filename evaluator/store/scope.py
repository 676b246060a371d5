"""Which evaluations a reader counts: production traffic, one named run, or every row; and,
when `since` is set, only those made (judged: `created_at`) at or after it.

Production traffic is every evaluation not made by a replay run: the worker's (no run id) and
`evaluator run`'s (runs of kind `run`). A replay judges a dataset, not traffic, so its rows
never count in production numbers: reports, alerts, agreement and its corrected rate, dataset
builds and the cost report all read through `Scope.sql`, the one place that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb

from evaluator.core.errors import ConfigError, StoreError

ScopeKind = Literal["production", "run", "all"]
REPLAY_KIND = "replay"
"""runs.kind of `evaluator replay` runs (the only kind that is not production traffic)."""

_COLUMN = re.compile(r"(?:[a-z_]+\.)?run_id")
_PARAM = "scope_run_id"
_SINCE = "scope_since"


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind = "production"
    run_id: str | None = None
    since: datetime | None = None
    """Only rows created (evaluations judged, judge calls made) at or after this moment."""

    def __post_init__(self) -> None:
        if (self.kind == "run") != (self.run_id is not None):
            verb = "needs" if self.kind == "run" else "takes no"
            raise ValueError(f"a {self.kind!r} scope {verb} run id")

    @classmethod
    def production(cls) -> Scope:
        return cls("production")

    @classmethod
    def run(cls, run_id: str) -> Scope:
        return cls("run", run_id)

    @classmethod
    def everything(cls) -> Scope:
        return cls("all")

    @classmethod
    def from_options(cls, run_id: str | None, all_runs: bool) -> Scope:
        """What a command's `--run RUN` / `--all-runs` options ask for (neither: production)."""
        if run_id is not None and all_runs:
            raise ConfigError("--run and --all-runs exclude each other: give one of them")
        if run_id is not None:
            return cls.run(run_id)
        return cls.everything() if all_runs else cls.production()

    def judged_since(self, since: datetime | None) -> Scope:
        """The same runs, only rows created at or after `since` (every row when None)."""
        return replace(self, since=since)

    def sql(self, column: str = "run_id") -> str:
        """A predicate over `column` (a run id column, e.g. `e.run_id`) and, with `since`, the
        same table's `created_at`; bind `params()` with it."""
        if not _COLUMN.fullmatch(column):
            raise ValueError(f"not a run id column: {column!r}")
        if self.since is None:
            return self._runs_sql(column)
        created_at = column.removesuffix("run_id") + "created_at"
        return f"({self._runs_sql(column)} AND {created_at} >= ${_SINCE})"

    def _runs_sql(self, column: str) -> str:
        if self.kind == "run":
            return f"({column} = ${_PARAM})"
        if self.kind == "all":
            return "(TRUE)"
        # The column stays outside the subquery: inside it, `run_id` would be runs.run_id.
        return (f"({column} IS NULL OR {column} NOT IN"
                f" (SELECT run_id FROM runs WHERE kind = '{REPLAY_KIND}'))")

    def params(self) -> dict[str, Any]:
        """The named parameters `sql()` uses (none unless one run is named)."""
        params: dict[str, Any] = {_PARAM: self.run_id} if self.kind == "run" else {}
        return params if self.since is None else {**params, _SINCE: self.since}

    def describe(self) -> str:
        """For people: 'production traffic', 'run RUN' or 'all runs'."""
        runs = {"production": "production traffic", "all": "all runs"}.get(
            self.kind, f"run {self.run_id}")
        return runs if self.since is None else f"{runs}, judged since {self.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id}

    def check(self, conn: duckdb.DuckDBPyConnection, where: str) -> Scope:
        """Itself, once a named run is known to exist in the store (else a StoreError naming
        the newest runs there)."""
        if self.kind != "run":
            return self
        [(known,)] = conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", [self.run_id]).fetchall()
        if known:
            return self
        newest = [row[0] for row in conn.execute(
            "SELECT run_id FROM runs ORDER BY started_at DESC, run_id LIMIT 5").fetchall()]
        known = f"the newest are {', '.join(newest)}" if newest else "it has no runs"
        raise StoreError(f"no run {self.run_id!r} in {where} ({known}): check the --run name")


PRODUCTION = Scope.production()
