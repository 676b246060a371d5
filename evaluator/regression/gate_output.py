"""The gate's result for people and CI: a rich table, JUnit XML and a pull-request summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Group

from evaluator.core.tables import Fitted, compact_table
from evaluator.regression.gate import GATE_RULE, GateResult, RubricGate, change_names

MAX_LISTED_ITEMS = 20
_MARKS = {"pass": "✅ pass", "regression": "❌ regression", "undecided": "⚠️ could not decide",
          "not_compared": "➖ not compared"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _versions(versions: list[int]) -> str:
    return ",".join(f"v{v}" for v in versions) or "-"


def _score_change(gate: RubricGate) -> str:
    if gate.score_change is None or gate.score_interval is None:
        return "-"
    low, high = gate.score_interval
    return f"{gate.score_change:+.3f} [{low:+.3f}, {high:+.3f}]"


def _p(gate: RubricGate) -> str:
    return "-" if gate.mcnemar_p is None else f"{gate.mcnemar_p:.3g}"


def _row(gate: RubricGate) -> list[str]:
    return [
        gate.rubric, f"{_versions(gate.baseline_versions)} → {_versions(gate.run_versions)}",
        str(gate.shared), f"{_pct(gate.baseline_shared_pass_rate)} → {_pct(gate.run_shared_pass_rate)}",
        str(len(gate.regressed)), str(len(gate.fixed)), str(len(gate.known_failures)),
        str(gate.run_unscored), _p(gate), _score_change(gate),
    ]


def columns(result: GateResult) -> tuple[str, ...]:
    """The table's column names; the change columns are named for the kind of comparison."""
    worse, better, both_fail = change_names(result.comparison)
    return ("rubric", "versions", "shared", "pass rate (shared)", worse, better, both_fail,
            "unscored", "McNemar p (one-sided)", "score change [CI]")


def _title(result: GateResult) -> str:
    return f"run {result.run_id} vs {result.baseline}: {result.comparison}"


def gate_table(result: GateResult):
    """The comparison table, then the statistic that decided each rubric."""

    names = (*columns(result), "decision")
    table = compact_table(f"Gate: {_title(result)}")
    for column in names:
        table.add_column(column, no_wrap=True)
    records = []
    for gate in result.rubrics:
        cells = (*_row(gate), _MARKS[gate.decision])
        table.add_row(*cells)
        records.append((cells[0], list(zip(names[1:], cells[1:], strict=True))))
    decided = [f"{gate.rubric}: {gate.decided_by}" for gate in result.rubrics if gate.decided_by]
    return Group(Fitted(table, records), *decided, f"rule: {GATE_RULE}")


def _listed(items: list[str], previews: dict[str, str]) -> list[str]:
    lines = [f"- `{item}` {previews.get(item, '')}".rstrip() for item in items[:MAX_LISTED_ITEMS]]
    if len(items) > MAX_LISTED_ITEMS:
        lines.append(f"- … and {len(items) - MAX_LISTED_ITEMS} more")
    return lines


def gate_markdown(result: GateResult) -> str:
    """A summary fit for a pull-request comment."""
    lines = [
        f"## Evaluator gate: {result.verdict}",
        "",
        f"Run `{result.run_id}` against {result.baseline}: {result.comparison}; alpha "
        f"{result.options.alpha:g}, at least {result.options.min_items} shared items per rubric.",
        "",
        f"Rule: {GATE_RULE}",
        "",
        "| " + " | ".join((*columns(result), "decision")) + " |",
        "|" + "---|" * (len(columns(result)) + 1),
    ]
    worse, _, both_fail = change_names(result.comparison)
    for gate in result.rubrics:
        lines.append("| " + " | ".join((*_row(gate), _MARKS[gate.decision])) + " |")
    for gate in result.rubrics:
        lines += ["", f"**{gate.rubric}** ({_MARKS[gate.decision]}): {gate.decided_by}"]
        if gate.regressed:
            what = worse if gate.decision == "regression" else f"{worse} (within noise)"
            lines += ["", f"<details><summary>{what}: {gate.rubric} ({len(gate.regressed)})</summary>",
                      "", *_listed(gate.regressed, result.previews), "", "</details>"]
        if gate.known_failures:
            lines += ["", f"<details><summary>{both_fail.capitalize()}: {gate.rubric} "
                      f"({len(gate.known_failures)})</summary>", "",
                      *_listed(gate.known_failures, {}), "", "</details>"]
    if result.notes:
        lines += ["", *[f"_Note: {note}_" for note in result.notes]]
    return "\n".join(lines) + "\n"


def gate_junit(result: GateResult) -> str:
    """JUnit XML: one test case per rubric and one per item that went from pass to fail."""
    suite = ET.Element("testsuite", name="evaluator-gate")
    counts = {"tests": 0, "failures": 0, "skipped": 0}

    def case(name: str, classname: str, failure: str | None = None, skipped: str | None = None,
             detail: str = "") -> None:
        element = ET.SubElement(suite, "testcase", name=name, classname=classname, time="0")
        counts["tests"] += 1
        if failure is not None:
            ET.SubElement(element, "failure", message=failure).text = detail or failure
            counts["failures"] += 1
        elif skipped is not None:
            ET.SubElement(element, "skipped", message=skipped)
            counts["skipped"] += 1
        if detail and failure is None:
            ET.SubElement(element, "system-out").text = detail

    for gate in result.rubrics:
        summary = (f"{gate.decided_by}; {gate.shared} shared items, pass rate "
                   f"{_pct(gate.baseline_shared_pass_rate)} -> {_pct(gate.run_shared_pass_rate)}")
        known = f"\nknown failures: {', '.join(gate.known_failures)}" if gate.known_failures else ""
        if gate.decision == "regression":
            case(gate.rubric, "evaluator.regression.gate.rubric", failure=summary, detail=summary + known)
        elif gate.decision in ("undecided", "not_compared"):
            case(gate.rubric, "evaluator.regression.gate.rubric", skipped=summary)
        else:
            case(gate.rubric, "evaluator.regression.gate.rubric", detail=summary + known)
        for item in gate.regressed:
            message = f"{gate.rubric}: item {item}: {change_names(result.comparison)[0]}"
            name = f"{gate.rubric}/{item}"
            if gate.decision == "regression":
                case(name, "evaluator.regression.gate.item", failure=message, detail=result.previews.get(item, ""))
            else:
                case(name, "evaluator.regression.gate.item", skipped=message + " (within noise for this rubric)")
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("errors", "0")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
