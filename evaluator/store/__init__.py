"""DuckDB storage for traces, evaluations, dead letters, the judge-call ledger and runs (see
duckdb_store.Store): migrations, Arrow batches, and every SQL query against its tables.

May import: core (the records it stores live there; never judges or worker).
"""

from evaluator.store.duckdb_store import Store
from evaluator.store.migrations import LATEST_VERSION, MIGRATIONS, Migration
from evaluator.store.models import RubricSummary, RunRecord, WriteResult
from evaluator.store.scope import PRODUCTION, Scope

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "PRODUCTION",
    "RubricSummary",
    "RunRecord",
    "Scope",
    "Store",
    "WriteResult",
]
