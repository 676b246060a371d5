"""The judge's API key never reaches a stored reason, however the provider's error echoes it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.pii.redact import REDACTED, redact_secret
from tests.support.judging import KEY_ENV, RUBRIC, TRACE, prompt

KEY = "sk-proj-Ab3/dE+fG9_hIj0-kLmN4pQr"


def _echoes(key: str) -> dict[str, str]:
    raw = key.encode()
    return {
        "as is": key,
        "upper-cased": key.upper(),
        "lower-cased": key.lower(),
        "URL-encoded": urllib.parse.quote(key, safe=""),
        "URL-encoded, lower-case hex": urllib.parse.quote(key, safe="").replace("%2F", "%2f"),
        "form-encoded": urllib.parse.quote_plus(key),
        "base64": base64.b64encode(raw).decode(),
        "base64 without padding": base64.b64encode(raw).decode().rstrip("="),
        "url-safe base64": base64.urlsafe_b64encode(raw).decode(),
        "base64 of basic auth": base64.b64encode(b"user:" + raw).decode(),
        "base64 at offset 2": base64.b64encode(b"ab" + raw + b"!").decode(),
        "hex": binascii.hexlify(raw).decode(),
    }


@pytest.mark.parametrize(("how", "echoed"), sorted(_echoes(KEY).items()))
def test_redact_secret_removes_every_encoding_of_the_key(how, echoed):
    text = f"Incorrect API key provided: {echoed} (request id 42)"
    redacted = redact_secret(text, KEY)
    assert echoed not in redacted, how
    assert REDACTED in redacted and redacted.endswith("(request id 42)")


def test_redact_secret_leaves_other_text_alone():
    text = "Incorrect API key provided; see https://platform.example.com/account/api-keys"
    assert redact_secret(text, KEY) == text
    assert redact_secret(text, "") == text


@given(secret=st.text(min_size=8, max_size=40), before=st.text(max_size=20), after=st.text(max_size=20))
def test_redact_secret_never_leaves_the_secret_or_its_base64(secret, before, after):
    encoded = base64.b64encode(secret.encode()).decode()
    for echoed in (secret, secret.upper(), encoded):
        redacted = redact_secret(before + echoed + after, secret)
        assert secret not in redacted
        assert encoded.rstrip("=") not in redacted


class _EchoingTransport:
    """A provider whose 401 echoes the key in the encoding under test."""

    name = "echoing"

    def __init__(self, echoed: str):
        self.echoed = echoed

    def structured_output_mode(self) -> str:
        return "json_schema"

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Any:
        error = RuntimeError(f"Incorrect API key provided: {self.echoed}")
        error.status_code = 401  # type: ignore[attr-defined]
        raise error


@pytest.mark.parametrize(("how", "echoed"), sorted(_echoes(KEY).items()))
def test_a_judge_echoing_the_key_in_any_encoding_never_stores_it_in_the_reason(monkeypatch, how, echoed):
    monkeypatch.setenv(KEY_ENV, KEY)
    config = JudgeConfig(name="echo", kind="litellm", model="openai/echo", api_key_env=KEY_ENV,
                         limits={"max_attempts": 1})
    judge = build_llm_judge(config, JudgeRuntime(), transport=_EchoingTransport(echoed))
    verdict = asyncio.run(judge.judge(RUBRIC, TRACE, prompt()))
    assert verdict.status == "error"
    assert echoed not in (verdict.reason or ""), how
    assert REDACTED in (verdict.reason or "")
