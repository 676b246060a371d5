"""Plugins through entry points: a broken plugin is one clear line and takes nothing down.

The plugins here are real distributions: a `*.dist-info` directory with `entry_points.txt` on
sys.path, which importlib.metadata finds like any installed package.
"""

from __future__ import annotations

import json
import logging

import pytest

from evaluator.cli import cli
from evaluator.core.errors import ConfigError
from evaluator.judges.kinds import JUDGE_KINDS
from evaluator.judges.scorers import SCORERS
from evaluator.monitoring.alerts.sinks import ALERT_SINKS

ENTRY_POINTS = """\
[evaluator.scorers]
short_answer = evaluator.judges.scorers.builtin:Length
missing_module = evaluator_no_such_module:Scorer
not_callable = evaluator.judges.scorers.builtin:DEFAULT_REGEX_TIMEOUT_S
regex = evaluator.judges.scorers.builtin:Contains

[evaluator.alert_sinks]
broken_sink = evaluator_no_such_module:Sink
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution 'acme-evaluator-plugins' with good and broken entry points."""
    dist = tmp_path / "acme_evaluator_plugins-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-evaluator-plugins\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (SCORERS, ALERT_SINKS, JUDGE_KINDS):
        registry.reload()
    yield
    monkeypatch.undo()
    for registry in (SCORERS, ALERT_SINKS, JUDGE_KINDS):
        registry.reload()


def test_a_working_plugin_is_usable_and_broken_ones_are_one_line_each(installed, caplog):
    with caplog.at_level(logging.WARNING, logger="evaluator.core.plugins"):
        assert SCORERS.get("short_answer") is not None
        assert SCORERS.get("regex").__name__ == "Regex"  # the built-in keeps its name
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3, lines
    assert any("'missing_module'" in line and "acme-evaluator-plugins 1.2" in line
               and "ModuleNotFoundError" in line for line in lines)
    assert any("'not_callable'" in line and "expected a class or function, got float" in line
               for line in lines)
    assert any("'regex'" in line and "is a built-in scorer; rename the entry point" in line
               for line in lines)
    with pytest.raises(ConfigError, match="scorer 'missing_module' is a plugin that failed to load: "
                                          "ModuleNotFoundError"):
        SCORERS.get("missing_module")
    with pytest.raises(ConfigError, match=r"unknown scorer 'nope'; known: contains, .*short_answer"):
        SCORERS.get("nope")
    # another group's broken plugin does not stop that group's built-ins either
    assert ALERT_SINKS.get("log") is not None
    assert JUDGE_KINDS.get("offline") is not None


def test_plugins_command_lists_every_group_with_what_failed(installed):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    listed = {(p["group"], p["name"], p["origin"]): p for p in entries}
    acme = "acme-evaluator-plugins 1.2"
    assert listed[("evaluator.scorers", "short_answer", acme)]["problem"] is None
    assert listed[("evaluator.scorers", "regex", "built-in")]["problem"] is None
    assert "is a built-in scorer" in listed[("evaluator.scorers", "regex", acme)]["problem"]
    assert "ModuleNotFoundError" in listed[("evaluator.alert_sinks", "broken_sink", acme)]["problem"]
    assert ("evaluator.judges", "litellm", "built-in") in listed
    table = CliRunner().invoke(cli, ["plugins"]).output
    assert "NOT LOADED: ModuleNotFoundError" in table
    rubrics = CliRunner().invoke(cli, ["rubrics", "list"]).output
    assert "short_answer" in rubrics and "acme-evaluator-plugins 1.2" in rubrics


def test_an_unknown_judge_kind_names_the_known_ones(tmp_path):
    from evaluator.judges.config import load_judge_config

    (tmp_path / "mine.yaml").write_text("name: mine\nkind: telepathy\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: field 'kind': unknown judge kind 'telepathy'; "
                                          r"known: [a-z_, ]*litellm, offline, panel"):
        load_judge_config("mine", tmp_path)


def test_an_unknown_alert_sink_kind_is_refused_with_its_place(tmp_path):
    from evaluator.monitoring.alerts.rules import load_alert_config

    rules = tmp_path / "alerts.yaml"
    rules.write_text(json.dumps({"sinks": [{"kind": "log"}, {"kind": "pager"}]}))
    with pytest.raises(ConfigError, match=r"sinks\.1: Value error, unknown alert sink 'pager'; known: "
                                          r"file, log, [a-z_, ]*stdout, webhook"):
        load_alert_config(rules)
