"""How a verdict is asked for (JSON schema, forced tool call or text) and read back from a reply.

Reasoning comes before the label in both schemas, so the model thinks before it labels; the
label is an enum of the rubric's labels, so the model is forced to pick from the menu.
"""

from __future__ import annotations

from typing import Any

MODES = ("json_schema", "tool", "text")
TOOL_NAME = "submit_verdict"


def verdict_schema(labels: tuple[str, ...]) -> dict[str, Any]:
    """The verdict object: reasoning first (the model thinks before it labels), then a label."""
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "label": {"type": "string", "enum": list(labels)},
        },
        "required": ["reasoning", "label"],
        "additionalProperties": False,
    }


def structured_output_kwargs(mode: str, labels: tuple[str, ...]) -> dict[str, Any]:
    """The request arguments that ask for a verdict in `mode`."""
    if mode == "json_schema":
        schema = {"name": "verdict", "strict": True, "schema": verdict_schema(labels)}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tool":
        function = {
            "name": TOOL_NAME,
            "description": "Submit the verdict: your reasoning first, then exactly one label.",
            "parameters": verdict_schema(labels),
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
        }
    return {}


def reply_of(response: Any) -> tuple[str, str | None]:
    """(verdict text, finish reason) of a chat completion from litellm or the openai client:
    the first tool call's arguments, else the message content."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return "", None
    message = getattr(choices[0], "message", None)
    calls = getattr(message, "tool_calls", None)
    if calls:
        return calls[0].function.arguments or "", choices[0].finish_reason
    return getattr(message, "content", None) or "", choices[0].finish_reason
