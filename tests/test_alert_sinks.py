"""Alert sinks: a webhook against a local HTTP server (body, retries, timeouts, refusals), the
file, log and stdout sinks, and one end-to-end check that posts to the webhook."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluator.alerts import AlertConfig, check_alerts
from evaluator.alerts.sinks import (
    FileSink, LogSink, Notification, StdoutSink, WebhookError, WebhookSink, WebhookSinkConfig,
    build_sinks, deliver,
)
from evaluator.errors import ConfigError
from tests.support.alert_streams import MINUTE, NOW, label_stream, write

FIRED = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


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

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.bodies: list[dict] = []
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
    with caplog.at_level(logging.INFO, logger="evaluator.alerts"):
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
