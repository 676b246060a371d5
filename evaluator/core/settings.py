"""The one settings object: every EVALUATOR_* variable, typed and validated, with embedded defaults.

Built once at an entry point (`Settings.from_env()`: the CLI, the span exporter, a worker process)
and passed down; nothing else in the package reads EVALUATOR_* variables. README's Configuration
table lists exactly these fields (tests/test_settings.py holds it to that).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evaluator.core.errors import ConfigError
from evaluator.core.read_memory import DEFAULT_READ_MEMORY_MB
from evaluator.core.records import MAX_TEXT_CHARS, MIN_TEXT_CHARS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JUDGES_DIR = PROJECT_ROOT / "judges"
BUNDLED_DATASETS_DIR = PROJECT_ROOT / "datasets"
"""The repository's datasets (sample traces, example regression set): read by name, never written."""
ENV_PREFIX = "EVALUATOR_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="ignore", populate_by_name=True)

    redis_url: str | None = None
    """Service mode when set; embedded (in-process broker) when not."""
    db_path: Path = Field(Path("evaluator.duckdb"), validation_alias="EVALUATOR_DB")
    rubrics_dir: Path = PROJECT_ROOT / "rubrics"
    judges_dir: Path = DEFAULT_JUDGES_DIR
    datasets_dir: Path = Field(default_factory=lambda: user_data_dir() / "datasets")
    """Where `datasets build` writes; names are looked up here, then in BUNDLED_DATASETS_DIR."""
    judge: str = "offline"
    sample_rate: float = 0.10
    sampling_config: Path | None = None
    """YAML of segment and rubric rates, always-evaluate rules and a daily budget."""
    daily_budget_usd: float | None = None
    """Judge spend per UTC day to pace random sampling to (wins over the sampling config's)."""
    max_text_chars: int = Field(MAX_TEXT_CHARS, ge=MIN_TEXT_CHARS)
    """Longest text field of a trace; longer ones are cut and marked."""
    worker_heartbeat_timeout_s: float = 60.0
    """A worker silent this long is taken for dead; its unacknowledged messages go to others."""
    broker_maintenance_chance: int = Field(1000, ge=1)
    """Broker commands per million that also look for dead workers (dramatiq's default: 1000)."""
    max_queue_depth: int = Field(10_000, ge=1)
    """Work messages waiting in Redis past which producers hold back (see worker/backpressure.py)."""
    queue_wait_s: float = 600.0
    """How long `evaluator ingest` waits for room in a full queue before it gives up."""
    pii_mode: Literal["mask", "hash", "off"] = "mask"
    pii_hash_salt: SecretStr = SecretStr("")
    pii_phone_region: str = "US"
    pii_judge_sees: Literal["masked", "raw"] = "masked"
    judge_cache: str = ""
    """`off`, `memory`, `redis` or a SQLite path; empty: the default for the mode."""
    judge_cache_max_entries: int = Field(1_000_000, ge=1)
    """Verdicts the SQLite judge cache keeps; past it the oldest written are deleted."""
    alerts_config: Path | None = None
    alerts_every_s: float = Field(60.0, ge=0)
    metrics_addr: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=0, le=65535)
    max_error_share: float | None = Field(None, ge=0, le=1)
    log_level: str | None = None
    stage_timings: str | None = None
    """Path prefix of the per-stage CPU time snapshots (benchmarks)."""
    target_api_key: SecretStr | None = None
    lake_dir: Path | None = None
    """Parquet lake that `export` writes, the sink rolls old days into, and reports read too."""
    hot_days: int | None = Field(None, ge=1)
    """Days (UTC) the sink keeps in DuckDB; older ones move to lake_dir. Unset: never moved."""
    read_memory_mb: int = Field(DEFAULT_READ_MEMORY_MB, ge=0)
    """DuckDB's memory limit for the commands that read the store (0: DuckDB's own, 80 % of RAM)."""
    events_endpoint: str | None = None
    """OTLP/HTTP logs endpoint the sink sends a `gen_ai.evaluation.result` event per evaluation to."""

    @field_validator("events_endpoint")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        """Refused at start: the exporter would only log each failed export."""
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError("give an http:// or https:// URL with a host, "
                                 "e.g. http://collector:4318/v1/logs")
        return value
    receiver_addr: str = "127.0.0.1"
    """Address `evaluator receive` listens on (`0.0.0.0`: every interface)."""
    receiver_port: int = Field(4318, ge=0, le=65535)
    receiver_token: SecretStr | None = None
    """When set, `evaluator receive` wants `Authorization: Bearer <token>` on every request."""
    receiver_max_body_bytes: int = Field(16 * 2**20, ge=1024)
    """Largest OTLP request body `evaluator receive` accepts, after decompression."""
    receiver_log_wait_s: float = Field(2.0, ge=0)
    """How long `evaluator receive` holds a complete trace for log records sent separately."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read the environment; a bad value raises ConfigError naming its variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None

    @property
    def judge_sees_raw(self) -> bool:
        return self.pii_judge_sees == "raw"


def user_data_dir() -> Path:
    """$XDG_DATA_HOME/evaluator, or ~/.local/share/evaluator: data kept outside the source tree."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "evaluator"


def env_name(field: str) -> str:
    """The variable a field is read from."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


_PROBLEMS = {
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
}


def _describe(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = env_name(field) if field in Settings.model_fields else field
    kind, context = error["type"], error.get("ctx") or {}
    if kind in _PROBLEMS:
        problem = _PROBLEMS[kind]
    elif kind == "greater_than_equal":
        problem = f"must be at least {context['ge']:g}"
    elif kind == "less_than_equal":
        problem = f"must be at most {context['le']:g}"
    elif kind == "literal_error":
        return f"{name}={error['input']!r}: use {context['expected']}"
    elif kind == "value_error":
        return f"{name}={error['input']!r}: {context['error']}"
    else:
        return f"{name}={error['input']!r}: {error['msg']}"
    return f"{name}={error['input']!r} {problem}"


DEFAULTS = Settings.model_construct()
"""Every field at its default, whatever the environment: for library calls given no Settings."""
