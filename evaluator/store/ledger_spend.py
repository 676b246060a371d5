"""Today's judge spend read from the DuckDB ledger: the SpendMeter of embedded runs
(evaluator.sampling.spend paces random sampling to it)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from evaluator.store.cost_queries import known_spend_on
from evaluator.store.duckdb_store import Store


class LedgerSpend:
    """Today's spend from the DuckDB ledger (embedded mode); 0 before the file exists. With
    `beside_writer`, the file is opened read-write: in the process whose sink holds it open, that
    joins the sink's database instead of waiting for it to close (DuckDB refuses a read-only
    connection next to a read-write one in one process)."""

    def __init__(self, db_path: Path, beside_writer: bool = False) -> None:
        self._db_path = Path(db_path)
        self._read_only = not beside_writer

    def spent_on(self, day: date) -> float:
        if not self._db_path.exists():
            return 0.0
        with Store(self._db_path, read_only=self._read_only) as store:
            return known_spend_on(store, day)
