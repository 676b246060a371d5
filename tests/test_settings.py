"""The one settings object: every EVALUATOR_* variable typed and validated, documented in README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluator.core.errors import ConfigError
from evaluator.core.records import MAX_TEXT_CHARS
from evaluator.core.settings import DEFAULTS, PROJECT_ROOT, Settings, env_name

README = PROJECT_ROOT / "README.md"
PACKAGE = PROJECT_ROOT / "evaluator"


def _readme_table_variables() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Configuration", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `EVALUATOR_")]
    return [re.match(r"\| `(EVALUATOR_[A-Z0-9_]+)`", row).group(1) for row in rows]


def _clear(monkeypatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)


def test_readme_table_lists_exactly_the_settings():
    documented = _readme_table_variables()
    assert len(documented) == len(set(documented)), "a variable is documented twice"
    assert sorted(documented) == sorted(env_name(name) for name in Settings.model_fields)


def test_no_module_reads_an_evaluator_variable_itself():
    """Every EVALUATOR_* variable goes through Settings: no other module reads the environment
    for one (library variables such as LITELLM_* and names a config file gives are not ours)."""
    readers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?:os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*([^)\]\s,]+)", text):
            if "EVALUATOR" in match.group(1) or match.group(1).isupper() and match.group(1).endswith("_ENV"):
                readers.append(f"{path.relative_to(PROJECT_ROOT)}: {match.group(0)}")
    assert readers == []


def test_defaults_without_any_variable(monkeypatch):
    _clear(monkeypatch)
    settings = Settings.from_env()
    assert settings == DEFAULTS
    assert settings.redis_url is None and settings.judge == "offline"
    assert settings.db_path == Path("evaluator.duckdb")
    assert settings.max_text_chars == MAX_TEXT_CHARS and settings.alerts_every_s == 60.0
    assert settings.pii_mode == "mask" and not settings.judge_sees_raw


def test_variables_are_read_typed(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("EVALUATOR_DB", str(tmp_path / "x.duckdb"))
    monkeypatch.setenv("EVALUATOR_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("EVALUATOR_MAX_TEXT_CHARS", "5000")
    monkeypatch.setenv("EVALUATOR_PII_JUDGE_SEES", "raw")
    monkeypatch.setenv("EVALUATOR_METRICS_PORT", "9101")
    monkeypatch.setenv("EVALUATOR_PII_HASH_SALT", "s3cret")
    monkeypatch.setenv("EVALUATOR_REDIS_URL", "")  # empty is unset, as before
    settings = Settings.from_env()
    assert settings.db_path == tmp_path / "x.duckdb" and settings.sample_rate == 0.25
    assert settings.max_text_chars == 5000 and settings.judge_sees_raw
    assert settings.metrics_port == 9101 and settings.redis_url is None
    assert settings.pii_hash_salt.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings), "secrets stay out of logs and tracebacks"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("EVALUATOR_SAMPLE_RATE", "lots", "EVALUATOR_SAMPLE_RATE='lots' is not a number"),
    ("EVALUATOR_MAX_QUEUE_DEPTH", "ten", "EVALUATOR_MAX_QUEUE_DEPTH='ten' is not a whole number"),
    ("EVALUATOR_MAX_QUEUE_DEPTH", "0", "EVALUATOR_MAX_QUEUE_DEPTH='0' must be at least 1"),
    ("EVALUATOR_MAX_TEXT_CHARS", "999", "EVALUATOR_MAX_TEXT_CHARS='999' must be at least 1000"),
    ("EVALUATOR_MAX_ERROR_SHARE", "2", "EVALUATOR_MAX_ERROR_SHARE='2' must be at most 1"),
    ("EVALUATOR_PII_MODE", "scramble", "EVALUATOR_PII_MODE='scramble': use 'mask', 'hash' or 'off'"),
    ("EVALUATOR_PII_JUDGE_SEES", "both", "EVALUATOR_PII_JUDGE_SEES='both': use 'masked' or 'raw'"),
    ("EVALUATOR_EVENTS_ENDPOINT", "collector:4318/v1/logs",
     "EVALUATOR_EVENTS_ENDPOINT='collector:4318/v1/logs': give an http:// or https:// URL with a host, "
     "e.g. http://collector:4318/v1/logs"),
    ("EVALUATOR_DB", "", None),  # empty: unset
])
def test_a_bad_value_names_its_variable(monkeypatch, name, value, message):
    _clear(monkeypatch)
    monkeypatch.setenv(name, value)
    if message is None:
        assert Settings.from_env() == DEFAULTS
        return
    with pytest.raises(ConfigError) as raised:
        Settings.from_env()
    assert str(raised.value) == message


def test_every_bad_value_is_reported_at_once(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("EVALUATOR_SAMPLE_RATE", "x")
    monkeypatch.setenv("EVALUATOR_QUEUE_WAIT_S", "y")
    with pytest.raises(ConfigError, match="EVALUATOR_SAMPLE_RATE=.*; EVALUATOR_QUEUE_WAIT_S="):
        Settings.from_env()


def test_settings_are_read_once_not_watched(monkeypatch):
    _clear(monkeypatch)
    settings = Settings.from_env()
    monkeypatch.setenv("EVALUATOR_JUDGE", "other")
    assert settings.judge == "offline"
    with pytest.raises(ValidationError, match="frozen"):  # passed down as built
        settings.judge = "other"  # type: ignore[misc]
