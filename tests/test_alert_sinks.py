"""Alert sinks: a webhook against a local HTTP server (body, retries, timeouts, refusals), the
file, log and stdout sinks, and one end-to-end check that posts to the webhook."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.errors import ConfigError
from evaluator.monitoring.alerts import AlertConfig, check_alerts, load_alert_config
from evaluator.monitoring.alerts.sinks import (
    FileSink,
    LogSink,
    Notification,
    StdoutSink,
    WebhookError,
    WebhookSink,
    WebhookSinkConfig,
    build_sinks,
    deliver,
    redact_url,
)
from tests.support.alert_streams import MINUTE, NOW, label_stream, write

FIRED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def notification(kind: str = "firing") -> Notification:
    return Notification(
        kind=kind, alert_id="a1", rule="hallucination_rate",
        labels={"rubric": "hallucination", "judge": "gpt"}, priority="P1", window="15m",
        observed=0.06, interval=(0.034, 0.1), threshold=0.005, n=200,
        example_trace_ids=tuple(f"t{i}" for i in range(10)),
        message="hallucination_rate (rubric=hallucination): rate 6.00% ...", fired_at=FIRED,
    )


class WebhookServer:
    """Records POSTed JSON bodies; answers with the scripted statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0,
                 location: str | None = None) -> None:
        self.bodies: list[dict] = []
        self.gets: list[str] = []
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.bodies.append(json.loads(body))
                time.sleep(server.delay_s)
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                server.gets.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_posts_slack_compatible_json():
    with WebhookServer() as server:
        WebhookSink(server.url).send(notification())
    [body] = server.bodies
    assert body["text"].startswith("[P1] FIRING hallucination_rate")
    assert "t0" in body["text"]
    alert = body["alert"]
    assert (alert["rule"], alert["window"], alert["n"], alert["threshold"]) == (
        "hallucination_rate", "15m", 200, 0.005)
    assert alert["observed"] == 0.06 and alert["interval"] == [0.034, 0.1]
    assert len(alert["example_trace_ids"]) == 10
    assert alert["fired_at"] == FIRED.isoformat()


def test_webhook_retries_server_errors():
    with WebhookServer(statuses=[503, 500]) as server:
        WebhookSink(server.url, attempts=3, backoff_s=0.01).send(notification())
    assert len(server.bodies) == 3


def test_webhook_does_not_retry_a_refusal():
    with WebhookServer(statuses=[400]) as server:
        with pytest.raises(WebhookError, match="HTTP 400"):
            WebhookSink(server.url, attempts=3, backoff_s=0.01).send(notification())
    assert len(server.bodies) == 1


def test_webhook_times_out_and_retries():
    with WebhookServer(delay_s=0.5) as server:
        with pytest.raises(WebhookError, match="after 2 attempt"):
            WebhookSink(server.url, timeout_s=0.1, attempts=2, backoff_s=0.01).send(notification())
    assert len(server.bodies) == 2


def test_a_dead_sink_does_not_silence_the_others(tmp_path, caplog):
    file_sink = FileSink(tmp_path / "out" / "alerts.jsonl")
    dead = WebhookSink("http://127.0.0.1:9/", timeout_s=0.2, attempts=1)
    with caplog.at_level(logging.ERROR):
        failures = deliver([dead, file_sink], [notification(), notification("resolved")])
    assert len(failures) == 2 and "not delivered" in caplog.text
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["alert"]["kind"] for line in lines] == ["firing", "resolved"]


def test_log_and_stdout_sinks(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="evaluator.monitoring.alerts"):
        LogSink().send(notification())
        LogSink().send(notification("resolved"))
    firing, resolved = caplog.records
    assert firing.levelno == logging.WARNING and resolved.levelno == logging.INFO
    assert firing.rule == "hallucination_rate" and "RESOLVED" in resolved.getMessage()
    StdoutSink().send(notification())
    assert capsys.readouterr().out.startswith("[P1] FIRING")


def test_webhook_url_from_the_environment(monkeypatch):
    config = WebhookSinkConfig(kind="webhook", url_env="TEST_ALERT_HOOK")
    with pytest.raises(ConfigError, match=r"\$TEST_ALERT_HOOK"):
        build_sinks([config])
    monkeypatch.setenv("TEST_ALERT_HOOK", "http://127.0.0.1:1/x")
    [sink] = build_sinks([config])
    assert sink.url == "http://127.0.0.1:1/x"
    with pytest.raises(ValueError, match="exactly one"):
        WebhookSinkConfig(kind="webhook")


def test_check_posts_fired_alerts_to_the_webhook(tmp_path):
    db = tmp_path / "e.duckdb"
    write(db, label_stream("h", "hallucination", NOW - 15 * MINUTE, NOW, 200, 12,
                           "hallucinated", "factual"))
    with WebhookServer() as server:
        config = AlertConfig.model_validate({
            "rules": [{"name": "hallucination_rate", "kind": "label_rate",
                       "rubrics": ["hallucination"], "labels": ["hallucinated"], "above": 0.005,
                       "min_samples": 100}],
            "sinks": [{"kind": "webhook", "url": server.url}],
        })
        report = check_alerts(db, config, now=NOW)
    assert report.delivery_failures == []
    [body] = server.bodies
    assert body["alert"]["rule"] == "hallucination_rate" and body["alert"]["n"] == 200


# -- hostile webhooks (issue 13) ---------------------------------------------------------------

SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSECRETtoken"


def hook_config(url: str, **sink) -> AlertConfig:
    return AlertConfig.model_validate({
        "rules": [{"name": "hallucination_rate", "kind": "label_rate", "rubrics": ["hallucination"],
                   "labels": ["hallucinated"], "above": 0.005, "min_samples": 100}],
        "sinks": [{"kind": "webhook", "url": url, **sink}],
    })


def test_redact_url_keeps_scheme_and_host_only():
    assert redact_url("https://user:pw@hooks.slack.com" + SECRET_PATH + "?token=x#y") == (
        "https://hooks.slack.com/…")
    assert redact_url("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/…"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/…"
    assert "SECRET" not in redact_url("hooks.slack.com" + SECRET_PATH)


@pytest.mark.parametrize("status", [None, 404, 500])
def test_a_failing_webhook_never_shows_its_url(tmp_path, monkeypatch, caplog, status):
    db = tmp_path / "e.duckdb"
    write(db, label_stream("h", "hallucination", NOW - 15 * MINUTE, NOW, 200, 12,
                           "hallucinated", "factual"))
    with WebhookServer(statuses=[status] * 3 if status else []) as server:
        url = server.url.removesuffix("/hook") + SECRET_PATH
        if status is None:
            server.httpd.server_close()  # nothing listens: connection refused
        monkeypatch.setenv("TEST_SECRET_HOOK", url)
        rules = tmp_path / "rules.yaml"
        rules.write_text(json.dumps({**hook_config("http://x").model_dump(mode="json"),
                                     "sinks": [{"kind": "webhook", "url_env": "TEST_SECRET_HOOK",
                                                "attempts": 1}]}))
        with caplog.at_level(logging.DEBUG):
            result = CliRunner().invoke(cli, ["alerts", "check", "--db", str(db), "--config",
                                              str(rules), "--at", NOW.isoformat(), "--json"])
    report = json.loads(result.stdout)
    [failure] = report["delivery_failures"]
    assert server.url.removesuffix("/hook") + "/…" in failure
    for text in (result.output, caplog.text):
        assert "SECRET" not in text


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x", "javascript:alert(1)",
    "hooks.slack.com" + SECRET_PATH, "http:///no-host", "http://127.0.0.1:notaport/x",
])
def test_only_http_webhooks_are_accepted(tmp_path, monkeypatch, url):
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"sinks": [{"kind": "webhook", "url": url}]}))
    with pytest.raises(ConfigError, match=r"sinks\.0\.webhook\.url.*(http:// or https://|invalid port)") as caught:
        load_alert_config(rules)
    assert "SECRET" not in str(caught.value) and "passwd" not in str(caught.value)
    monkeypatch.setenv("TEST_ALERT_HOOK", url)
    with pytest.raises(ConfigError, match=r"\$TEST_ALERT_HOOK.*(http:// or https://|invalid port)") as caught:
        build_sinks([WebhookSinkConfig(kind="webhook", url_env="TEST_ALERT_HOOK")])
    assert "SECRET" not in str(caught.value) and "passwd" not in str(caught.value)
    with pytest.raises(ConfigError):
        WebhookSink(url)


def test_a_redirecting_webhook_is_a_failure_not_a_silent_get(tmp_path):
    with WebhookServer(statuses=[302], location="/elsewhere") as server:
        with pytest.raises(WebhookError, match="HTTP 302"):
            WebhookSink(server.url, attempts=3, backoff_s=0.01).send(notification())
    assert len(server.bodies) == 1 and server.gets == []


def test_webhook_text_is_escaped_for_slack_mrkdwn():
    hostile = dataclasses.replace(
        notification(), example_trace_ids=("<!channel>", "a&b", "<@U123>"),
        message="rate up, see <https://evil.example|https://sso.example.com/login>",
    )
    with WebhookServer() as server:
        WebhookSink(server.url).send(hostile)
    [body] = server.bodies
    text = body["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text and "a&amp;b" in text and "&lt;@U123&gt;" in text
    assert "&lt;https://evil.example|https://sso.example.com/login&gt;" in text
    assert body["alert"]["example_trace_ids"][0] == "<!channel>"  # structured data stays exact
