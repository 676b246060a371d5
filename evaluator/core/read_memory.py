"""DuckDB's memory limit for read-only stores in this process (EVALUATOR_READ_MEMORY_MB): set by
the CLI when a command starts (evaluator.cli), read by evaluator.store when a read-only Store
opens. DuckDB's cached blocks, not Python objects, were most of a read command's peak RSS
(benchmarks/bench_reads.py); past the limit, large sorts, joins and aggregates spill to a
temporary file."""

from __future__ import annotations

DEFAULT_READ_MEMORY_MB = 200
"""Read commands on 4,000,000 evaluations stay under 400 MB of peak RSS, no slower."""

_read_memory_mb = DEFAULT_READ_MEMORY_MB


def set_read_memory_mb(mb: int) -> None:
    """0: DuckDB's own limit (80 % of RAM)."""
    global _read_memory_mb
    _read_memory_mb = mb


def read_memory_mb() -> int:
    return _read_memory_mb
