"""The local OpenAI-compatible test server's streaming and per-request faults, through the real
openai client (the conformance suite's drivers rely on them from another virtualenv)."""

from __future__ import annotations

import openai
import pytest

from tests.support.openai_server import REASONING, OpenAIServer

ANSWER = f"Reasoning: {REASONING}\nLabel: pass"


@pytest.fixture(scope="module")
def client():
    with OpenAIServer() as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=10)


def _ask(client, text: str, **options):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}],
                                          **options)


def test_a_streamed_reply_is_the_same_answer_in_chunks_with_usage_last(client):
    chunks = list(_ask(client, "Hi", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER == _ask(client, "Hi").choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3


def test_a_streamed_tool_call_arrives_whole(client):
    tools = [{"type": "function", "function": {"name": "submit", "parameters": {"type": "object"}}}]
    chunks = list(_ask(client, "Hi", stream=True, tools=tools))
    [call] = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert call.function.name == "submit" and REASONING in call.function.arguments


def test_a_marker_in_the_message_injects_a_fault_for_that_request_only(client):
    filtered = _ask(client, "Say it INJECT_FAULT=content_filter").choices[0]
    assert filtered.finish_reason == "content_filter" and ANSWER.startswith(filtered.message.content)
    assert len(filtered.message.content) < len(ANSWER)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        _ask(client, "Anyone? INJECT_FAULT=404")
    assert _ask(client, "INJECT_FAULT=nonsense").choices[0].message.content == ANSWER
