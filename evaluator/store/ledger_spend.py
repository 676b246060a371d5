"""Today's judge spend read from the DuckDB ledger: the SpendMeter of embedded runs
(evaluator.sampling.spend paces random sampling to it)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from evaluator.store.cost_queries import known_spend_on
from evaluator.store.duckdb_store import Store


class LedgerSpend:
    """Today's spend from the DuckDB ledger (embedded mode); 0 before the file exists."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = Path(db_path)

    def spent_on(self, day: date) -> float:
        if not self._db_path.exists():
            return 0.0
        with Store(self._db_path, read_only=True) as store:
            return known_spend_on(store, day)
