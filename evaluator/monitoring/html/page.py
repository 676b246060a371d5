"""The report page: one HTML document with inline CSS and inline SVG, readable and printable.

Trace content (questions, answers, judge reasoning, labels, model names) is untrusted: every
value goes through `esc` before it reaches the page. There is no script on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import evaluator.monitoring.html.svg as svg
from evaluator.monitoring.html.data import ReportData
from evaluator.monitoring.html.svg import PALETTE, Segment, Series, esc
from evaluator.store.alert_queries import StoredAlert

if TYPE_CHECKING:
    from evaluator.humans.agreement.results import JudgeAgreement

MAX_TEXT = 700
TIME_FORMATS = {"day": "%m-%d", "week": "%Y-%m-%d"}
"""x labels per bucket unit; finer buckets show hours and minutes."""

CSS = """
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f5f6f8; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
.meta { color: var(--muted); margin: 0 0 12px; }
nav { margin: 8px 0 16px; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: #175cd3; text-decoration: none; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px;
        margin-bottom: 16px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.kpi b { display: block; font-size: 20px; }
.kpi span { color: var(--muted); font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(500px, 1fr)); gap: 16px;
         margin-bottom: 16px; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 8px;
               padding: 12px 16px 14px; margin-bottom: 16px; }
.cards section.card { margin-bottom: 0; }
section.card.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 2px; }
.note { color: var(--muted); font-size: 12px; margin: 0 0 8px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .gridline { stroke: #e4e7ec; }
svg .axis { fill: #667085; font-size: 11px; }
svg .muted { fill: #98a2b3; }
svg .on-bar { fill: #111; font-size: 11px; }
svg .on-dark { fill: #fff; }
.confusions { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px; }
.badge.firing { background: #fee4e2; color: var(--bad); }
.badge.resolved { background: #dcfae6; color: #067647; }
.example { border-left: 4px solid #d73027; padding: 6px 12px; margin: 10px 0; background: #fcfcfd; }
.example h3 { font-size: 14px; margin: 0 0 4px; }
.example dl { display: grid; grid-template-columns: 90px 1fr; gap: 2px 10px; margin: 0; }
.example dt { color: var(--muted); }
.example dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
code { font-size: 12px; overflow-wrap: anywhere; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .cards { display: block; }
  section.card, .kpi { break-inside: avoid; border-color: #bbb; }
  .cards section.card { margin-bottom: 10px; }
  .example { break-inside: avoid; }
}
"""


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more characters]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _card(section_id: str, title: str, note: str, body: str, wide: bool = False) -> str:
    css = "card wide" if wide else "card"
    return (f'<section class="{css}" id="{section_id}"><h2>{esc(title)}</h2>'
            f'<p class="note">{esc(note)}</p>{body}</section>')


def _rubric_colors(rubrics: Sequence[str]) -> dict[str, str]:
    return {rubric: PALETTE[i % len(PALETTE)] for i, rubric in enumerate(rubrics)}


def _over_time(data: ReportData, metric: str) -> str:
    series_data = getattr(data.over_time, metric)
    colors = _rubric_colors(data.rubrics)
    fmt = TIME_FORMATS.get(data.over_time.unit, "%m-%d %H:%M")
    labels = [b.strftime(fmt) for b in data.over_time.buckets]
    series = [Series(r, series_data[r], data.over_time.counts[r], colors[r])
              for r in data.rubrics if r in series_data]
    if metric == "pass_rate":
        return svg.line_chart(series, labels, title="Pass rate per rubric over time")
    return svg.line_chart(series, labels, title="Mean score per rubric over time", fmt=svg.score_text)


def _label_mix(data: ReportData) -> str:
    rows = []
    for rubric in data.rubrics:
        labels = data.label_mix[rubric]
        rows.append((rubric, [Segment(label, share, n, svg.label_color(i / max(1, len(labels) - 1)))
                              for i, (label, share, n, _score) in enumerate(labels)]))
    return svg.stacked_bars(rows, title="Label mix per rubric")


def _rates_by(data: ReportData, grouped: dict[str, dict[str, tuple[float | None, int]]],
              title: str) -> str:
    groups = sorted(grouped)
    colors = _rubric_colors(data.rubrics)
    series = [Series(r, [grouped[g].get(r, (None, 0))[0] for g in groups],
                     [grouped[g].get(r, (None, 0))[1] for g in groups], colors[r])
              for r in data.rubrics]
    return svg.grouped_bars(groups, series, title=title)


def _agreement(groups: Sequence[JudgeAgreement], note: str | None) -> str:
    if not groups:
        return f'<p class="note">{esc(note or "No judge-human pairs yet.")}</p>'
    rows, matrices = [], []
    for g in groups:
        report = g.agreement
        if report is None:  # agreement_groups keeps the groups with human labels only
            continue
        headline = report.headline_estimate
        ci = headline.ci
        value = "-" if headline.value is None else f"{headline.value:.2f}"
        interval = ("" if ci is None or ci.low is None or ci.high is None
                    else f" ({ci.low:.2f} to {ci.high:.2f})")
        name = f"{g.ref} · {g.judge}"
        rows.append(f"<tr><td>{esc(name)}</td><td class='num'>{g.n}</td>"
                    f"<td>{esc(report.headline)}</td><td class='num'>{esc(value + interval)}</td>"
                    f"<td class='num'>{_pct(report.accuracy.value)}</td>"
                    f"<td>{esc(report.verdict)}</td></tr>")
        matrix = report.confusion_matrix
        matrices.append(f"<figure><figcaption>{esc(name)}</figcaption>"
                        + svg.confusion_heatmap([str(x) for x in matrix.labels], matrix.counts,
                                                title=f"Confusion matrix {name}") + "</figure>")
    table = ("<table><tr><th>rubric · judge</th><th>items</th><th>statistic</th><th>value (CI)</th>"
             "<th>agreement</th><th>verdict</th></tr>" + "".join(rows) + "</table>")
    extra = f'<p class="note">{esc(note)}</p>' if note else ""
    return table + extra + '<div class="confusions">' + "".join(matrices) + "</div>"


def _alerts(alerts: Sequence[StoredAlert]) -> str:
    if not alerts:
        return ('<p class="note">No alerts recorded. Run <code>evaluator alerts check</code>'
                " (or the sink in service mode).</p>")
    rows = []
    for a in alerts:
        labels = ", ".join(f"{k}={v}" for k, v in a.labels.items())
        interval = "" if a.interval is None else f" [{a.interval[0]:.3g}, {a.interval[1]:.3g}]"
        observed = "-" if a.observed is None else f"{a.observed:.3g}{interval}"
        threshold = "-" if a.threshold is None else f"{a.threshold:.3g}"
        resolved = f"<br>resolved {esc(_when(a.resolved_at))}" if a.resolved_at else ""
        rows.append(
            f"<tr><td><span class='badge {esc(a.state)}'>{esc(a.state)}</span></td>"
            f"<td>{esc(a.priority)}</td><td>{esc(a.rule)}<br><span class='note'>{esc(labels)}</span>"
            f"</td><td>{esc(a.window)}</td><td class='num'>{esc(observed)}</td>"
            f"<td class='num'>{threshold}</td><td class='num'>{a.n if a.n is not None else '-'}</td>"
            f"<td>{esc(_when(a.fired_at))}{resolved}</td></tr>")
    return ("<table><tr><th>state</th><th>prio</th><th>rule</th><th>window</th><th>observed [CI]</th>"
            "<th>threshold</th><th>n</th><th>fired</th></tr>" + "".join(rows) + "</table>")


def _worst(examples: Sequence[dict[str, Any]]) -> str:
    if not examples:
        return '<p class="note">No scored evaluations in this period.</p>'
    parts = []
    for ex in examples:
        context = " · ".join(esc(x) for x in (ex["model"], ex["prompt_version"], _when(ex["when"])) if x)
        parts.append(
            f"<article class='example'><h3>{esc(ex['rubric'])}: {esc(ex['label'])}"
            f" (score {ex['score']:.2f}) <span class='note'>{context}</span></h3><dl>"
            f"<dt>trace</dt><dd><code>{esc(ex['trace_id'])}</code> · judge {esc(ex['judge'])}</dd>"
            f"<dt>question</dt><dd>{esc(_clip(ex['question']))}</dd>"
            f"<dt>answer</dt><dd>{esc(_clip(ex['output']))}</dd>"
            f"<dt>reasoning</dt><dd>{esc(_clip(ex['reasoning']))}</dd></dl></article>")
    return "".join(parts)


def _kpis(data: ReportData, alerts: Sequence[StoredAlert]) -> str:
    t = data.totals
    firing = sum(1 for a in alerts if a.state == "firing")
    items = [("evaluations", f"{t['evaluations']:,}"), ("traces", f"{t['traces']:,}"),
             ("pass rate (weighted)", _pct(t["pass_rate"])), ("scored", f"{t['scored']:,}"),
             ("unscored / errors", f"{t['unscored']:,} / {t['errors']:,}"),
             ("skipped", f"{t['skipped']:,}"), ("alerts firing", str(firing))]
    return '<div class="kpis">' + "".join(
        f"<div class='kpi'><b>{esc(value)}</b><span>{esc(name)}</span></div>" for name, value in items
    ) + "</div>"


def render_page(data: ReportData, alerts: Sequence[StoredAlert], agreement_groups: Sequence[JudgeAgreement],
                agreement_note: str | None) -> str:
    t = data.totals
    scope = [data.scope.describe()]
    if data.since:
        scope.append(f"judged since {_when(data.since)}")
    meta = (f"{data.db} · traces from {_when(t['first'])} to {_when(t['last'])} · judges:"
            f" {t['judges'] or '-'} · {', '.join(scope)}"
            f" · generated {_when(data.generated_at)}")
    weighted = "Weighted by sampling weight, so rates estimate all traffic."
    unit = data.over_time.unit
    sections = [
        _card("pass-rate", "Pass rate over time",
              f"Per rubric, per {unit} of the trace's start time. {weighted}",
              _over_time(data, "pass_rate")),
        _card("mean-score", "Mean score over time", f"Per rubric, per {unit}; 1 = desired. {weighted}",
              _over_time(data, "mean_score")),
        _card("label-mix", "Label mix",
              f"Share of scored evaluations per label, best label first. {weighted}",
              _label_mix(data)),
        _card("by-model", "Pass rate by model", f"Model of the evaluated trace. {weighted}",
              _rates_by(data, data.by_model, "Pass rate by model")),
        _card("by-prompt", "Pass rate by prompt version",
              f"Prompt version of the evaluated trace. {weighted}",
              _rates_by(data, data.by_prompt_version, "Pass rate by prompt version")),
        _card("cost", "Judge cost per day", "Judge calls made (not from cache), by the day they ran."
              " Hatched: calls of unknown cost (never counted as free).",
              svg.cost_bars(data.cost_per_day, title="Judge cost per day")),
    ]
    nav = " ".join(f'<a href="#{i}">{esc(n)}</a>' for i, n in (
        ("pass-rate", "Pass rate"), ("mean-score", "Mean score"), ("label-mix", "Labels"),
        ("by-model", "By model"), ("by-prompt", "By prompt"), ("cost", "Cost"),
        ("agreement", "Agreement"), ("alerts", "Alerts"), ("worst", "Worst examples")))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Evaluator report</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>Evaluator quality report</h1><p class='meta'>{esc(meta)}</p>"
        + ("" if data.empty_note is None else f"<p class='meta'><b>{esc(data.empty_note)}</b></p>")
        + "</header>"
        f"<nav>{nav}</nav>{_kpis(data, alerts)}<div class='cards'>{''.join(sections)}</div>"
        + _card("agreement", "Judge vs human agreement", "Judge labels against human labels"
                " (all time); rows of the confusion matrix are human labels.",
                _agreement(agreement_groups, agreement_note), wide=True)
        + _card("alerts", "Latest alerts", "Newest first; observed value with its interval.",
                _alerts(alerts), wide=True)
        + _card("worst", "Worst examples", "Lowest-scored evaluations with the judge's reasoning"
                " (trace content is shown as plain text).", _worst(data.worst), wide=True)
        + "</main></body></html>"
    )
