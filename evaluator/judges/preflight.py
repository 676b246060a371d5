"""The judge preflight: before `run`, `replay`, `ingest --embedded` and `worker` start, check that
the judge can answer, and fail with one line naming the fix when it cannot.

For each model the judge needs (the judge itself, or every LLM member of a panel): the API key
is present when the model needs one (a judge with an `api_base` and no key in its variable sends
none: local servers want none), and one tiny request, through the same transport the judge uses
and with a short timeout, gets a chat completion back. A transient failure (429, 5xx) gets one
more try. A judge whose own model fails passes when one of its fallbacks answers. The offline
judge needs nothing. `--no-preflight` skips the check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from evaluator.core.errors import JudgeUnavailableError
from evaluator.core.records import Trace
from evaluator.judges.base import JudgeLink, JudgeVerdict
from evaluator.judges.config import JudgeConfig, load_judge_config
from evaluator.judges.kinds import judge_kind
from evaluator.judges.retry import is_retryable, is_timeout
from evaluator.judges.retrying import describe_failure
from evaluator.judges.transport import MalformedReplyError, build_transport
from evaluator.rubrics import RenderedPrompt, Rubric

log = logging.getLogger(__name__)

PREFLIGHT_TIMEOUT_S = 10.0
ATTEMPTS = 2
RETRY_PAUSE_S = 0.5
SKIP_HINT = "(skip this check with --no-preflight)"
REQUEST = {"messages": [{"role": "user", "content": "Reply with the single word: ok"}],
           "max_tokens": 16}
CONNECTION_NAMES = frozenset({"APIConnectionError", "ConnectionError", "ClientConnectorError",
                              "ConnectError"})


def preflight(name: str, judges_dir: Path, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Raise JudgeUnavailableError (one line, naming the fix) unless judge `name` can answer."""
    config = load_judge_config(name, judges_dir)
    members = [load_judge_config(member, judges_dir) for member in config.panel] or [config]
    for member in members:
        if judge_kind(member.kind).calls_model:
            _check_with_fallbacks(member, judges_dir, timeout_s)


def needs_key(config: JudgeConfig) -> str | None:
    """The variable a judge's key must be in, when the judge cannot work without it."""
    env = config.api_key_env
    if env and not os.environ.get(env) and not config.api_base:
        return env
    return None


class RequireKey:
    """The key wrapper, outermost of each LLM judge: without the key its model needs, every
    call is an error naming the variable to set (before the cache: no key, no verdicts)."""

    def __init__(self, inner: JudgeLink, config: JudgeConfig):
        self.inner = inner
        self.name = inner.name
        self.config_hash = inner.config_hash
        self.config = config

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0, may_defer: bool = False) -> JudgeVerdict:
        if needs_key(self.config):  # with an api_base, no key is sent: local servers want none
            return JudgeVerdict(status="error", attempts=0, reason=(
                f"judge '{self.name}' needs an API key: set the environment variable "
                f"{self.config.api_key_env}"))
        return await self.inner.judge(rubric, trace, prompt, sample=sample, may_defer=may_defer)


def _check_with_fallbacks(config: JudgeConfig, judges_dir: Path, timeout_s: float) -> None:
    try:
        _check(config, judges_dir, timeout_s)
    except JudgeUnavailableError as first:
        for name in config.fallbacks:
            try:
                _check(load_judge_config(name, judges_dir), judges_dir, timeout_s)
            except JudgeUnavailableError:
                continue
            log.warning("%s; its fallback '%s' answers, so evaluations go there", first, name)
            return
        raise


def _check(config: JudgeConfig, judges_dir: Path, timeout_s: float) -> None:
    where = judges_dir / f"{config.name}.yaml"
    missing = needs_key(config)
    if missing:
        raise JudgeUnavailableError(
            f"judge '{config.name}' needs an API key: set the environment variable {missing} "
            f"(or choose another judge with --judge) {SKIP_HINT}")
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    short = config.model_copy(update={"limits": config.limits.model_copy(
        update={"timeout_s": timeout_s})})
    transport = build_transport(short)
    for attempt in range(1, ATTEMPTS + 1):
        started = time.monotonic()
        try:
            asyncio.run(asyncio.wait_for(transport.complete(dict(REQUEST), key), timeout_s + 1))
        except TimeoutError as exc:
            raise JudgeUnavailableError(_timed_out(config, timeout_s)) from exc
        except Exception as exc:  # the client's own errors, classified below
            if is_retryable(exc) and not _is_unreachable(exc) and not is_timeout(exc) and (
                    attempt < ATTEMPTS):
                time.sleep(RETRY_PAUSE_S)
                continue
            raise JudgeUnavailableError(_diagnosis(config, where, exc, key, timeout_s)) from None
        log.info("judge %s answered the preflight request in %.0f ms", config.name,
                 (time.monotonic() - started) * 1000)
        return


def _address(config: JudgeConfig) -> str:
    return config.api_base or f"the provider of {config.model}"


def _timed_out(config: JudgeConfig, timeout_s: float) -> str:
    return (f"judge '{config.name}' did not answer a one-line test request within {timeout_s:g}s "
            f"at {_address(config)}: check that the server is up and the model "
            f"'{config.model}' is loaded {SKIP_HINT}")


def _is_unreachable(exc: Exception) -> bool:
    """No connection (refused, no route, DNS); a timeout is told apart first."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & CONNECTION_NAMES) and not is_timeout(exc)


def _diagnosis(config: JudgeConfig, where: Path, exc: Exception, key: str | None,
               timeout_s: float) -> str:
    described = describe_failure(exc, key)
    status = getattr(exc, "status_code", None)
    name, address = config.name, _address(config)
    if is_timeout(exc):
        return _timed_out(config, timeout_s)
    if _is_unreachable(exc):
        return (f"judge '{name}' is not reachable at {address} ({described}): start the server "
                f"or fix api_base in {where} {SKIP_HINT}")
    if status in (401, 403):
        fix = (f"set a valid key in ${config.api_key_env}" if config.api_key_env
               else f"name the variable holding the key in api_key_env in {where}")
        return f"judge '{name}' was refused (HTTP {status}, {described}): {fix} {SKIP_HINT}"
    if status == 404:
        return (f"judge '{name}': model '{config.model}' not found at {address} ({described}): "
                f"fix model (or api_base) in {where} {SKIP_HINT}")
    if isinstance(exc, MalformedReplyError):
        return (f"judge '{name}' answered at {address}, but not with a chat completion "
                f"({described}): point api_base at an OpenAI-compatible /v1 endpoint {SKIP_HINT}")
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return (f"judge '{name}' rejected a one-line test request ({described}): check model "
                f"and params in {where} {SKIP_HINT}")
    return (f"judge '{name}' failed a one-line test request at {address} ({described}): the "
            f"server is failing; retry later or choose another judge with --judge {SKIP_HINT}")
