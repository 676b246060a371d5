"""`evaluator show TRACE_ID`: one trace, its evaluations and the prompt each judge saw."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evaluator.commands.context import current_settings

FIELDS = ("model", "provider", "status", "error", "finish_reason", "feedback", "prompt_version",
          "session_id", "user_id", "start_time", "latency_ms", "input_tokens", "output_tokens",
          "tags", "metadata", "truncated", "pii_masked")


@click.command("show")
@click.argument("trace_id")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--rubric", default=None, help="Only this rubric's evaluations.")
@click.option("--no-prompt", is_flag=True, help="Leave out the judge prompts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(trace_id, db, rubric, no_prompt, as_json) -> None:
    """TRACE_ID (or a unique start of it) as stored, masked: the trace, each evaluation with
    label, score, reasoning, rubric version, judge and cost, and the exact prompt the judge
    saw (rendered again and checked against the stored prompt hash)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.monitoring.trace_view import view_trace
    from evaluator.rubrics import RubricRegistry

    settings = current_settings()
    view = view_trace(db or settings.db_path, trace_id, RubricRegistry.load(settings.rubrics_dir),
                      rubric, settings.max_text_chars, settings.lake_dir)
    if as_json:
        data = view.to_dict()
        if no_prompt:
            for evaluation in data["evaluations"]:
                evaluation["prompt"]["messages"] = []
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in _lines(view, not no_prompt):
        click.echo(line)


def _lines(view, with_prompts: bool) -> list[str]:
    lines = [f"trace {view.trace_id}: {view.origin}"]
    trace = view.trace
    if trace is not None:
        values = trace.model_dump(mode="json", include=set(FIELDS))
        lines += [f"  {name}: {_value(values[name])}" for name in FIELDS
                  if values.get(name) not in (None, [], {}, False)]
        if trace.system:
            lines += _block("system", trace.system)
        if isinstance(trace.input, str):
            lines += _block("input", trace.input)
        else:
            for message in trace.input:
                lines += _block(f"input ({message.role})", message.content)
        for number, document in enumerate(trace.context, start=1):
            lines += _block(f"context [{number}]", document)
        lines += _block("output", trace.output)
        if trace.expected is not None:
            lines += _block("expected (reference answer)", trace.expected)
    if not view.evaluations:
        lines.append("no evaluations")
    for evaluation, check in view.evaluations:
        lines += _evaluation(evaluation)
        lines.append(f"  prompt ({check.verdict}): {check.note}")
        if with_prompts:
            for message in check.messages:
                lines += _block(f"judge prompt, {message['role']}", message["content"], "    ")
    return lines


def _evaluation(e) -> list[str]:
    score = "-" if e.score is None else f"{e.score:g}"
    passed = {True: "pass", False: "fail", None: "-"}[e.passed]
    spent = e.usage.cost_usd
    cost = ("unknown" if spent is None else f"${spent:.6f}") if e.attempts else "none"
    lines = [
        "",
        f"evaluation {e.rubric}@v{e.rubric_version} by judge {e.judge} "
        f"({e.created_at:%Y-%m-%d %H:%M:%S} UTC{', run ' + e.run_id if e.run_id else ''})",
        f"  {e.status}: label {e.label or '-'}, score {score}, {passed}; cost {cost}, "
        f"{e.attempts} call(s){', cached' if e.cached else ''}",
        f"  rubric hash {e.rubric_hash[:12]}, judge hash {e.judge_hash[:12]}, "
        f"evaluation {e.evaluation_id}",
    ]
    if e.reason:
        lines.append(f"  reason: {e.reason}")
    if e.reasoning:
        lines += _block("reasoning", e.reasoning)
    if e.claims is not None:
        lines += _claims(e.claims)
    return lines


def _claims(claims) -> list[str]:
    """Claim by claim: its verdict, the claim, and the evidence quoted for it."""
    supported = sum(claim.verdict == "supported" for claim in claims)
    lines = [f"  claims ({supported} of {len(claims)} supported):"]
    for number, claim in enumerate(claims, start=1):
        lines += _block(f"{number}. {claim.verdict}", claim.claim, "    ")
        if claim.evidence:
            lines += _block("evidence", claim.evidence, "      ")
    return lines


def _block(title: str, text: str, indent: str = "  ") -> list[str]:
    return [f"{indent}{title}:", *(f"{indent}  {line}" for line in text.splitlines() or [""])]


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
