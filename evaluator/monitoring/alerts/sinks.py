"""Where alert notifications go: the log, stdout, a JSON-lines file, a webhook, or a sink a
plugin registers (ALERT_SINKS, entry-point group `evaluator.alert_sinks`).

A webhook gets a JSON body with a top-level "text" (what Slack-style incoming webhooks show,
escaped for Slack's mrkdwn: trace ids and messages are data, never a ping or a disguised link)
plus the structured alert under "alert". A sink that fails is logged and skipped: one dead
webhook must not stop the others, nor the alert check itself.

A webhook URL is a secret (its path is the credential): only http(s) URLs are accepted, and
logs, errors and reports show it as `redact_url` does, scheme and host only. Redirects are not
followed (urllib would turn the POST into a body-less GET elsewhere and call it sent).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from evaluator.core.errors import ConfigError, EvaluatorError
from evaluator.core.plugins import Registry
from evaluator.core.retry import Backoff, RetryPolicy, retry_call

log = logging.getLogger(__name__)

USER_AGENT = "evaluator-alerts/1"


@dataclass(frozen=True)
class Notification:
    """One message about one alert: it fired, or it resolved."""

    kind: Literal["firing", "resolved"]
    alert_id: str
    rule: str
    labels: dict[str, str]
    priority: str
    window: str
    observed: float | None
    interval: tuple[float, float] | None
    threshold: float | None
    n: int
    example_trace_ids: tuple[str, ...]
    message: str
    fired_at: datetime
    resolved_at: datetime | None = None

    @property
    def text(self) -> str:
        """One line a person reads in a chat channel or a log."""
        head = "FIRING" if self.kind == "firing" else "RESOLVED"
        text = f"[{self.priority}] {head} {self.message}"
        if self.example_trace_ids:
            text += f" | examples: {', '.join(self.example_trace_ids)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "alert_id": self.alert_id,
            "rule": self.rule,
            "labels": self.labels,
            "priority": self.priority,
            "window": self.window,
            "observed": self.observed,
            "interval": None if self.interval is None else list(self.interval),
            "threshold": self.threshold,
            "n": self.n,
            "example_trace_ids": list(self.example_trace_ids),
            "message": self.message,
            "fired_at": self.fired_at.isoformat(),
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
        }


def mrkdwn_escape(text: str) -> str:
    """Slack's escaping of message text: `&`, `<` and `>` become `&amp;`, `&lt;` and `&gt;`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(notification: Notification) -> dict[str, Any]:
    return {"text": mrkdwn_escape(notification.text), "alert": notification.to_dict()}


def redact_url(url: str) -> str:
    """What may be shown of a webhook URL: `https://hooks.slack.com/…` (scheme, host, port)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{netloc}{f':{port}' if port else ''}/…"


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook (None when it can); never quotes the URL's secret part."""
    parts = urlsplit(url)
    try:
        _ = parts.port  # reading it raises ValueError for an invalid port
    except ValueError:
        return f"the webhook URL {redact_url(url)} has an invalid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (f"a webhook URL must start with http:// or https:// and name a host (got a"
                f" {parts.scheme or 'missing'} scheme{'' if parts.hostname else ' and no host'})")
    return None


class AlertSink(Protocol):
    def send(self, notification: Notification) -> None: ...


class LogSink:
    """Firing alerts at WARNING, resolutions at INFO, with the alert's fields on the record."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("evaluator.monitoring.alerts")

    def send(self, notification: Notification) -> None:
        level = logging.WARNING if notification.kind == "firing" else logging.INFO
        self._log.log(level, notification.text, extra={
            "alert_id": notification.alert_id, "rule": notification.rule,
            "priority": notification.priority, "alert_state": notification.kind,
        })


class StdoutSink:
    def send(self, notification: Notification) -> None:
        print(notification.text, file=sys.stdout, flush=True)


class FileSink:
    """Appends one JSON object per notification (the webhook body) to a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, notification: Notification) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(webhook_payload(notification), ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


class WebhookError(EvaluatorError):
    """A webhook did not accept a notification after all attempts."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx becomes an HTTPError: a webhook that moved must be reconfigured


def _transient_webhook_failure(exc: BaseException) -> bool:
    """Timeouts, connection errors, 429 and 5xx; any other HTTP status means the request itself
    is wrong (a 3xx too: a webhook that moved must be reconfigured), and retrying will not help."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException, OSError))


class WebhookSink:
    """POSTs the JSON payload; retries timeouts, connection errors, 429 and 5xx with backoff."""

    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 3,
                 backoff_s: float = 0.5, headers: dict[str, str] | None = None) -> None:
        problem = webhook_url_problem(url)
        if problem:
            raise ConfigError(problem)
        self.url = url
        self.shown = redact_url(url)
        self._opener = urllib.request.build_opener(_NoRedirects)
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(Backoff(backoff_s, cap_s=math.inf, jitter="none"),
                                 _transient_webhook_failure, max_attempts=attempts)
        self.headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                        **(headers or {})}

    def send(self, notification: Notification) -> None:
        body = json.dumps(webhook_payload(notification)).encode("utf-8")
        attempts = 0

        def post() -> None:
            nonlocal attempts
            attempts += 1
            request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()

        try:
            retry_call(post, self.retry)
            return
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            problem = self._scrub(str(getattr(exc, "reason", exc)))
        raise WebhookError(f"webhook {self.shown} refused the alert ({problem}) after {attempts}"
                           " attempt(s): check the URL and that the receiver is up")

    def _scrub(self, text: str) -> str:
        """An error text without the URL or its path, in case a library quoted them."""
        parts = urlsplit(self.url)
        for secret in (self.url, parts.path, parts.query):
            if len(secret) > 1:
                text = text.replace(secret, "…")
        return text


# -- configuration -----------------------------------------------------------------------------


class LogSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["log"]


class StdoutSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["stdout"]


class FileSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["file"]
    path: Path


class WebhookSinkConfig(BaseModel):
    """Give `url`, or `url_env` naming the variable that holds it (webhook URLs are secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["webhook"]
    url: str | None = None
    url_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSinkConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("a webhook sink needs exactly one of url or url_env")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        problem = None if url is None else webhook_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

    def resolve_url(self) -> str:
        if self.url is not None:
            return self.url
        url = os.environ.get(self.url_env or "", "")
        if not url:
            raise ConfigError(f"the alert webhook reads its URL from ${self.url_env}, which is not"
                              " set: export it, or remove the webhook sink from the alert rules")
        problem = webhook_url_problem(url)
        if problem:
            raise ConfigError(f"${self.url_env}: {problem}")
        return url


class PluginSinkConfig(BaseModel):
    """A plugin sink's entry in alerts.yaml: its `kind` and whatever options it takes."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str


@dataclass(frozen=True)
class SinkKind:
    """What a sink `kind` in alerts.yaml is validated with, and how its sink is built."""

    config: type[BaseModel]
    build: Callable[[Any], AlertSink]


def _usable_sink(value: object) -> str | None:
    if isinstance(value, SinkKind) or callable(value):
        return None
    return f"expected a SinkKind or a callable taking the sink's options, got {type(value).__name__}"


ALERT_SINKS: Registry[SinkKind | Callable[..., AlertSink]] = Registry(
    "evaluator.alert_sinks", "alert sink", _usable_sink)
"""Sink kinds. A plugin's entry point (group `evaluator.alert_sinks`) names a SinkKind, or a
callable called with the entry's options (the mapping without `kind`) returning an AlertSink."""
ALERT_SINKS.register("log", SinkKind(LogSinkConfig, lambda _: LogSink()), "evaluator.monitoring.alerts.sinks:LogSink")
ALERT_SINKS.register("stdout", SinkKind(StdoutSinkConfig, lambda _: StdoutSink()),
                     "evaluator.monitoring.alerts.sinks:StdoutSink")
ALERT_SINKS.register("file", SinkKind(FileSinkConfig, lambda config: FileSink(config.path)),
                     "evaluator.monitoring.alerts.sinks:FileSink")
ALERT_SINKS.register("webhook", SinkKind(WebhookSinkConfig, lambda config: WebhookSink(
    config.resolve_url(), config.timeout_s, config.attempts)), "evaluator.monitoring.alerts.sinks:WebhookSink")


def sink_kind(name: str) -> SinkKind:
    found = ALERT_SINKS.get(name)
    if isinstance(found, SinkKind):
        return found
    return SinkKind(PluginSinkConfig, lambda config: found(**(config.model_extra or {})))


def _sink_config(value: Any) -> BaseModel:
    """A sink entry of alerts.yaml, validated by its kind's config model."""
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise ValueError("a sink is a mapping with a 'kind', e.g. {kind: log}")
    try:
        return sink_kind(value["kind"]).config.model_validate(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    except ValidationError as exc:  # the problems again, located under the sink's kind
        raise ValidationError.from_exception_data(exc.title, [
            InitErrorDetails(type=PydanticCustomError(error["type"], error["msg"]),
                             loc=(value["kind"], *error["loc"]), input=error["input"])
            for error in exc.errors()]) from None


SinkConfig = Annotated[Any, PlainValidator(_sink_config)]
"""A sink entry of alerts.yaml: the config model of its kind (any kind ALERT_SINKS knows)."""


def build_sinks(configs: Sequence[Any]) -> list[AlertSink]:
    return [sink_kind(config.kind).build(config) for config in configs]


def deliver(sinks: Sequence[AlertSink], notifications: Sequence[Notification]) -> list[str]:
    """Send every notification to every sink; return the failures (already logged)."""
    failures: list[str] = []
    for notification in notifications:
        for sink in sinks:
            try:
                sink.send(notification)
            except Exception as exc:  # one broken sink must not silence the others
                failure = f"{type(sink).__name__}: {exc}"
                log.error("alert %s not delivered: %s", notification.alert_id, failure)
                failures.append(failure)
    return failures
