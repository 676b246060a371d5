"""Process-wide settings from the environment (EVALUATOR_*), with embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evaluator.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def float_env(name: str, default: float | None) -> float | None:
    """A number setting from the environment, `default` when unset, with a clear error."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def int_env(name: str, default: int, minimum: int = 1) -> int:
    """A whole-number setting from the environment, at least `minimum`, with a clear error."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    redis_url: str | None
    """Service mode when set; embedded (in-process broker) when not."""
    db_path: Path
    rubrics_dir: Path
    judges_dir: Path
    datasets_dir: Path
    judge: str
    sample_rate: float
    worker_heartbeat_timeout_s: float = 60.0
    """A worker silent this long is taken for dead; its unacknowledged messages go to others."""
    broker_maintenance_chance: int = 1000
    """Broker commands per million that also look for dead workers (dramatiq's default: 1000)."""
    max_queue_depth: int = 10_000
    """Work messages waiting in Redis past which producers hold back (see queue/backpressure.py)."""
    queue_wait_s: float = 600.0
    """How long `evaluator ingest` waits for room in a full queue before it gives up."""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            redis_url=env.get("EVALUATOR_REDIS_URL") or None,
            db_path=Path(env.get("EVALUATOR_DB", "evaluator.duckdb")),
            rubrics_dir=Path(env.get("EVALUATOR_RUBRICS_DIR", PROJECT_ROOT / "rubrics")),
            judges_dir=Path(env.get("EVALUATOR_JUDGES_DIR", PROJECT_ROOT / "judges")),
            datasets_dir=Path(env.get("EVALUATOR_DATASETS_DIR", PROJECT_ROOT / "datasets")),
            judge=env.get("EVALUATOR_JUDGE", "offline"),
            sample_rate=float_env("EVALUATOR_SAMPLE_RATE", 0.10),
            worker_heartbeat_timeout_s=float_env("EVALUATOR_WORKER_HEARTBEAT_TIMEOUT_S", 60.0),
            broker_maintenance_chance=int_env("EVALUATOR_BROKER_MAINTENANCE_CHANCE", 1000),
            max_queue_depth=int_env("EVALUATOR_MAX_QUEUE_DEPTH", 10_000),
            queue_wait_s=float_env("EVALUATOR_QUEUE_WAIT_S", 600.0),
        )
