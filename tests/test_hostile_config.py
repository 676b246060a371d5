"""Hostile settings and config files (issue 13, Low items): each is one clear error, never a
traceback, a hang or invalid JSON. A judge name with rich markup, a --since or window too large
for a date, a YAML bomb in judge params, NaN budgets, and where the metrics endpoint listens."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.errors import ConfigError, EvaluatorError
from evaluator.core.settings import PROJECT_ROOT
from evaluator.judges.config import load_judge_config
from evaluator.worker.metrics import start_metrics_server

TRACES = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as every other JSON parser does."""
    def refuse(constant: str) -> None:
        raise ValueError(f"invalid JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def judges(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "judges"
    directory.mkdir()
    shutil.copy(PROJECT_ROOT / "judges" / "offline.yaml", directory / "offline.yaml")
    monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(directory))
    return directory


# -- judge names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["[/bold]", "x[red]y", "a b", "", "ünïcode", "x" * 65, "../up"])
def test_a_judge_name_is_a_plain_identifier(judges, name):
    (judges / "evil.yaml").write_text(json.dumps({"name": name, "kind": "offline", "params": {}}))
    with pytest.raises(ConfigError, match="evil.yaml: field 'name'"):
        load_judge_config("evil", judges)


def test_run_with_a_markup_judge_name_is_one_clear_error(judges, tmp_path):
    (judges / "evil.yaml").write_text('name: "[/bold]"\nkind: offline\nparams: {}\n')
    db = tmp_path / "e.duckdb"
    result = CliRunner().invoke(cli, ["run", "--traces", str(TRACES), "--judge", "evil",
                                      "--db", str(db)])
    assert isinstance(result.exception, ConfigError), result.exception
    assert "name" in str(result.exception)
    later = CliRunner().invoke(cli, ["run", "--traces", str(TRACES), "--db", str(db)])
    assert later.exit_code == 0, later.output
    assert CliRunner().invoke(cli, ["report", "--db", str(db)]).exit_code == 0


# -- YAML bombs ----------------------------------------------------------------------------------

BILLION_LAUGHS = """name: bomb
kind: offline
params:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_billion_laughs_in_judge_params_is_refused_at_once(judges):
    (judges / "bomb.yaml").write_text(BILLION_LAUGHS)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="bomb.yaml: .*too large"):
        load_judge_config("bomb", judges)
    assert time.perf_counter() - started < 2.0


def test_deeply_nested_judge_params_are_refused(judges):
    (judges / "deep.yaml").write_text("name: deep\nkind: offline\nparams: {x: "
                                      + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(ConfigError, match="deep.yaml: "):
        load_judge_config("deep", judges)


def test_anchors_that_stay_small_still_load(judges):
    (judges / "small.yaml").write_text("name: small\nkind: offline\nparams:\n"
                                       "  stop: &s [a, b]\n  also: *s\n")
    config = load_judge_config("small", judges)
    assert config.params == {"stop": ["a", "b"], "also": ["a", "b"]} and config.config_hash


# -- sizes and times past what a date can hold ---------------------------------------------------


def test_datasets_build_since_a_huge_duration_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALUATOR_DATASETS_DIR", str(tmp_path / "datasets"))
    db = tmp_path / "d.duckdb"
    assert CliRunner().invoke(cli, ["run", "--traces", str(TRACES), "--db", str(db)]).exit_code == 0
    for since in ("99999999999d", "999999999d"):
        result = CliRunner().invoke(cli, ["datasets", "build", "--name", "x", "--db", str(db),
                                          "--since", since])
        assert isinstance(result.exception, EvaluatorError), result.exception
        assert "--since" in str(result.exception)


# -- NaN budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_a_daily_budget_must_be_a_finite_number(tmp_path, monkeypatch, value):
    monkeypatch.setenv("EVALUATOR_DAILY_BUDGET_USD", value)
    result = CliRunner().invoke(cli, ["run", "--traces", str(TRACES), "--db",
                                      str(tmp_path / "b.duckdb"), "--json"])
    assert isinstance(result.exception, ConfigError), result.output
    assert "EVALUATOR_DAILY_BUDGET_USD" in str(result.exception)


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_a_daily_budget_in_the_sampling_file_must_be_finite(tmp_path, monkeypatch, value):
    from evaluator.sampling.config import sampling_policy

    monkeypatch.delenv("EVALUATOR_DAILY_BUDGET_USD", raising=False)
    config = tmp_path / "sampling.yaml"
    config.write_text(f"daily_budget_usd: {value}\n")
    with pytest.raises(ConfigError, match="daily_budget_usd"):
        sampling_policy(0.1, config)


@pytest.mark.parametrize("command", ["run", "replay"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_max_cost_must_be_a_finite_number(tmp_path, command, value):
    args = (["run", "--traces", str(TRACES)] if command == "run"
            else ["replay", str(PROJECT_ROOT / "datasets" / "example_regression.jsonl")])
    db = tmp_path / "c.duckdb"
    result = CliRunner().invoke(cli, [*args, "--db", str(db), "--max-cost", value, "--json"])
    assert isinstance(result.exception, ConfigError), result.output
    assert "--max-cost" in str(result.exception) and "finite" in str(result.exception)
    assert not db.exists()  # refused before anything ran


def test_run_json_is_strict_json(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALUATOR_DAILY_BUDGET_USD", "5")
    result = CliRunner().invoke(cli, ["run", "--traces", str(TRACES), "--db",
                                      str(tmp_path / "j.duckdb"), "--max-cost", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert strict_json(result.stdout)


# -- metrics bind address ------------------------------------------------------------------------


def serve(**kwargs):
    server = start_metrics_server(0, **kwargs)
    try:
        return server.server_address[0]
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_listen_on_loopback_unless_configured(monkeypatch):
    from evaluator.core.settings import Settings

    monkeypatch.delenv("EVALUATOR_METRICS_ADDR", raising=False)
    assert serve() == "127.0.0.1"
    assert serve(addr=Settings.from_env().metrics_addr) == "127.0.0.1"
    monkeypatch.setenv("EVALUATOR_METRICS_ADDR", "0.0.0.0")
    assert serve(addr=Settings.from_env().metrics_addr) == "0.0.0.0"
