"""Secrets and PII: after a run whose traces carry every raw value of the PII test set, judged by
an LLM judge whose server answers some calls with a 401 that echoes the API key back, no artifact
holds the key or a raw PII value: not the DuckDB file (every text column of every table), not
the logs at DEBUG, not the judge cache, not the dataset built from the failures, not the JSON and
HTML reports. And configuration files are read as data, never as code.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from evaluator.core.errors import ConfigError, RubricError
from evaluator.judges.config import load_judge_config
from evaluator.monitoring.alerts import load_alert_config
from evaluator.rubrics import load_rubric
from tests.support.figures import record
from tests.support.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parent.parent
PII = [json.loads(line) for line in
       (ROOT / "tests" / "data" / "pii_positive.jsonl").read_text(encoding="utf-8").splitlines()]
KEY_ENV = "LEAKY_JUDGE_API_KEY"


def pii_traces(path: Path) -> Path:
    """Every PII value of the test set in some trace field (four a trace), plus one invalid
    line carrying PII, which ends as a dead letter. Half the answers ask the test server for a
    failing verdict, so the run has failures to build a dataset from."""
    texts = [row["text"] for row in PII]
    lines = []
    for index in range(0, len(texts), 4):
        chunk = texts[index:index + 4] + [""] * 3
        lines.append(json.dumps({
            "trace_id": f"pii-{index // 4}", "system": chunk[3] or "Be helpful.",
            "input": [{"role": "user", "content": chunk[0]}], "context": [chunk[1] or "No notes."],
            "output": (chunk[2] or "Done.") + (" EXPECT_LABEL=hallucinated" if index % 8 else ""),
            "feedback": "negative",
        }))
    lines.append(json.dumps({"output": f"(no trace id) {PII[0]['text']} / {PII[-1]['text']}"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(args: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "evaluator", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    with log.open("a", encoding="utf-8") as out:
        out.write(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def database_text(db: Path) -> dict[str, str]:
    """Every column of every table, cast to text, as one string per table."""
    connection = duckdb.connect(str(db), read_only=True)
    try:
        columns = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns").fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in columns:
            query = f'SELECT CAST("{column}" AS VARCHAR) FROM "{table}"'
            values = connection.execute(query).fetchall()
            tables.setdefault(table, []).extend(str(value) for (value,) in values if value)
        return {table: "\n".join(values) for table, values in tables.items()}
    finally:
        connection.close()


def leaks(text: str, key: str) -> list[str]:
    found = [f"API key {key[:8]}..."] if key in text else []
    return found + [f"{row['kind']} {row['value']!r}" for row in PII if row["value"] in text]


@pytest.mark.slow
@pytest.mark.parametrize("client", ["openai", "litellm"])
def test_no_artifact_of_a_run_holds_the_key_or_raw_pii(client, tmp_path):
    key = "sk-leak-" + secrets.token_hex(16)
    db, datasets, judges = tmp_path / "run.duckdb", tmp_path / "datasets", tmp_path / "judges"
    datasets.mkdir()
    judges.mkdir()
    logs = tmp_path / "logs.txt"
    with OpenAIServer(latency_ms=1, faults={"401": 0.25, "500": 0.1}, seed=7) as server:
        (judges / "leaky.yaml").write_text(yaml.safe_dump({
            "name": "leaky", "kind": "litellm", "client": client, "model": "openai/leaky-judge",
            "api_base": server.base_url, "api_key_env": KEY_ENV, "params": {"temperature": 0},
            "limits": {"max_attempts": 2, "timeout_s": 10},
            # the breaker stays closed: with a third of the calls faulted it would open within
            # ~20 calls and which verdicts fail (the dataset's source) would be left to chance
            "breaker": {"consecutive_failures": 1000, "failure_rate": 1.0, "window": 1000},
        }), encoding="utf-8")
        env = {**os.environ, KEY_ENV: key, "EVALUATOR_LOG_LEVEL": "DEBUG", "LITELLM_LOG": "DEBUG",
               "EVALUATOR_DB": str(db), "EVALUATOR_JUDGES_DIR": str(judges),
               "EVALUATOR_DATASETS_DIR": str(datasets)}
        _run(["run", "--traces", str(pii_traces(tmp_path / "traces.jsonl")), "--judge", "leaky",
              "--sample-rate", "1.0", "--no-preflight", "--max-error-share", "1"], env, logs)
        echoed_401s = server.stats.by_status.get(401, 0)
    _run(["report", "--json"], env, logs)
    _run(["report", "--html", str(tmp_path / "report.html")], env, logs)
    built = _run(["datasets", "build", "--name", "pii-failures", "--json"], env, logs)

    tables = database_text(db)
    artifacts = {f"duckdb:{table}": text for table, text in tables.items()}
    artifacts.update({str(path.relative_to(tmp_path)): path.read_bytes().decode("utf-8", "replace")
                      for path in tmp_path.rglob("*") if path.is_file()
                      and path.name not in ("traces.jsonl", "run.duckdb", "run.duckdb.wal")})
    found = {name: leaks(text, key) for name, text in artifacts.items()}
    found = {name: hits for name, hits in found.items() if hits}
    record("secrets_and_pii", client=client, pii_values=len(PII), artifacts=len(artifacts),
           echoed_401s=echoed_401s, leaks=len(found))
    assert echoed_401s > 0, "the 401 fault that echoes the key never fired"
    assert any(path.suffix == ".jsonl" for path in datasets.iterdir()), f"no dataset was built: {built.stdout[-2000:]}"
    assert {"evaluations", "traces", "dead_letters"} <= tables.keys()
    assert "[redacted]" in tables["evaluations"] or "401" in tables["evaluations"]
    assert not found, found


YAML_ATTACKS = {
    "python_object": "!!python/object/apply:os.system ['touch {marker}']",
    "python_name": "!!python/name:os.system",
    "python_module": "!!python/module:os",
}


@pytest.mark.parametrize("attack", sorted(YAML_ATTACKS))
def test_config_files_are_read_as_data_not_code(attack, tmp_path):
    """YAML tags that would build Python objects or run code are refused, never executed: in
    judge configs, alert rules and rubric front matter."""
    marker = tmp_path / "pwned"
    payload = YAML_ATTACKS[attack].format(marker=marker)
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"name: judge\nkind: offline\ndescription: {payload}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_judge_config(str(judge))
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(f"rules:\n  - name: {payload}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read the alert rules"):
        load_alert_config(alerts)
    rubric = tmp_path / "tagged" / "v1.jinja"
    rubric.parent.mkdir()
    rubric.write_text(f"---\ncriterion: tagged\nversion: 1\ndescription: {payload}\n---\n",
                      encoding="utf-8")
    with pytest.raises(RubricError, match="front matter is not valid YAML"):
        load_rubric(rubric)
    assert not marker.exists()
