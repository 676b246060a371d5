"""How a verdict is asked for (JSON schema, forced tool call or text) and read back from a reply.

Reasoning comes before the label in both schemas, so the model thinks before it labels; the
label is an enum of the rubric's labels, so the model is forced to pick from the menu. A rubric
that asks for claims gets a `claims` list between them (each claim with an enum verdict and its
evidence); strict schemas require every key, so the list is required there and may be empty.
"""

from __future__ import annotations

from typing import Any

from evaluator.judges.parsing import CLAIM_VERDICTS, CLAIMS_KEY

MODES = ("json_schema", "tool", "text")
TOOL_NAME = "submit_verdict"

_CLAIM_SCHEMA = {
    "type": "object",
    "properties": {
        "claim": {"type": "string"},
        "verdict": {"type": "string", "enum": list(CLAIM_VERDICTS)},
        "evidence": {"type": ["string", "null"]},
    },
    "required": ["claim", "verdict", "evidence"],
    "additionalProperties": False,
}


def verdict_schema(labels: tuple[str, ...], claims: bool = False) -> dict[str, Any]:
    """The verdict object: reasoning first (the model thinks before it labels), the claims
    when asked for, then a label."""
    properties: dict[str, Any] = {"reasoning": {"type": "string"}}
    if claims:
        properties[CLAIMS_KEY] = {"type": "array", "items": _CLAIM_SCHEMA}
    properties["label"] = {"type": "string", "enum": list(labels)}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def structured_output_kwargs(mode: str, labels: tuple[str, ...],
                             claims: bool = False) -> dict[str, Any]:
    """The request arguments that ask for a verdict in `mode`."""
    if mode == "json_schema":
        schema = {"name": "verdict", "strict": True, "schema": verdict_schema(labels, claims)}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tool":
        function = {
            "name": TOOL_NAME,
            "description": "Submit the verdict: your reasoning first, then exactly one label.",
            "parameters": verdict_schema(labels, claims),
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
