"""The HTML report: every section drawn from a real embedded run, self-contained, escaped,
printable; and the same file opened in headless Chromium (screenshot, drawn marks, PDF)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.errors import ConfigError
from evaluator.core.records import Trace
from evaluator.core.rows import StoredTrace
from evaluator.core.since import parse_since
from evaluator.monitoring.alerts import check_alerts, load_alert_config
from evaluator.monitoring.html import write_html_report
from evaluator.monitoring.html.data import bucket_size
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded
from tests.support import chromium
from tests.support.alert_streams import evaluation

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '</dd><script>alert("x")</script><img src=x onerror="alert(1)">'
CHART_SECTIONS = ("pass-rate", "mean-score", "label-mix", "by-model", "by-prompt", "cost", "agreement")


def _add_hostile_and_unpriced(db: Path) -> None:
    """A trace whose content tries to break out of the page, and a call of unknown cost."""
    trace = Trace(trace_id="hostile-1", input=HOSTILE, output=HOSTILE, model=HOSTILE,
                  prompt_version="v3", start_time=datetime(2026, 11, 24, 9, tzinfo=UTC))
    bad = evaluation("hostile-1", "hallucination", datetime.now(UTC), label="hallucinated",
                     score=0.0, judge="offline", weight=1000.0).model_copy(update={"reasoning": HOSTILE})
    unpriced = evaluation("hostile-1", "refusal", datetime.now(UTC), label="complied",
                          score=1.0, judge="offline", cost=None)
    Store.write_once(db, [bad, unpriced], [StoredTrace(trace, "random", 10.0)])


def _add_human_labels(db: Path, count: int = 40) -> None:
    """Humans agree with the judge's relevance label on most traces, not all."""
    with Store(db) as store:
        rows = store.conn.execute(
            "SELECT trace_id, label FROM evaluations WHERE rubric = 'relevance' AND status = 'scored'"
            " ORDER BY trace_id LIMIT ?", [count]).fetchall()
        for i, (trace_id, label) in enumerate(rows):
            human = label if i % 5 else ("irrelevant" if label == "relevant" else "relevant")
            store.conn.execute(
                "INSERT INTO human_labels (label_id, trace_id, rubric, rubric_version, label,"
                " annotator, source, imported_at) VALUES (?, ?, 'relevance', 1, ?, 'ann', 'test', now())",
                [f"l{i}", trace_id, human])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("html")
    db = folder / "report.duckdb"
    run_embedded(ROOT / "datasets" / "sample_traces.jsonl", db)
    _add_hostile_and_unpriced(db)
    _add_human_labels(db)
    check_alerts(db, load_alert_config(), sinks=[])
    path = write_html_report(db, folder / "out" / "report.html")
    return path, path.read_text(encoding="utf-8")


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section class="card[^"]*" id="{section_id}">(.*?)</section>', html, re.DOTALL)
    assert match, f"no section {section_id}"
    return match.group(1)


def test_every_chart_is_drawn(report):
    _, html = report
    assert section(html, "pass-rate").count('<path class="series"') == 4
    assert section(html, "mean-score").count('<path class="series"') == 4
    assert section(html, "label-mix").count('class="bar"') >= 10
    assert section(html, "by-model").count('class="bar"') >= 12
    assert section(html, "by-prompt").count('class="bar"') >= 12
    cost = section(html, "cost")
    assert 'class="bar unknown"' in cost and "calls of unknown cost" in cost
    agreement = section(html, "agreement")
    assert agreement.count('class="cell"') == 16  # relevance: 4 labels x 4
    assert "relevance@v1" in agreement and "kappa" in agreement
    alerts = section(html, "alerts")
    assert "hallucination_rate" in alerts and "badge firing" in alerts
    assert section(html, "worst").count("<article class='example'>") >= 10


def test_the_file_is_self_contained_and_printable(report):
    _, html = report
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert re.findall(r"https?://[^\s\"'<]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    assert "<link" not in html and "@import" not in html
    assert "@media print" in html and "break-inside: avoid" in html


def test_untrusted_trace_content_is_escaped(report):
    _, html = report
    assert HOSTILE not in html and 'onerror="alert(1)"' not in html
    assert "&lt;/dd&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_without_human_labels_the_section_says_how_to_get_them(tmp_path):
    db = tmp_path / "plain.duckdb"
    Store.write_once(db, [evaluation("t1", "relevance", datetime.now(UTC),
                                     label="relevant", score=1.0)])
    html = write_html_report(db, tmp_path / "r.html").read_text()
    assert "No human labels yet" in section(html, "agreement")
    assert "No alerts recorded" in section(html, "alerts")


def test_since_filters_and_validates(report, tmp_path):
    path, _ = report
    db = path.parent.parent / "report.duckdb"
    later = write_html_report(db, tmp_path / "later.html", since="2099-01-01").read_text()
    assert "no scored evaluations in this period" in section(later, "pass-rate")
    now = datetime(2026, 11, 27, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-20", now) == datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since 'last week'"):
        parse_since("last week", now)


def test_bucket_size_keeps_points_meaningful():
    start = datetime(2026, 11, 23, tzinfo=UTC)
    assert bucket_size(start, start + timedelta(days=3), 300) == (6 * 3600, "6 hours")
    assert bucket_size(start, start + timedelta(hours=6), 5000) == (900, "15 minutes")
    assert bucket_size(start, start + timedelta(days=60), 100_000)[1] == "day"
    assert bucket_size(start, start + timedelta(days=800), 10)[1] == "week"


def test_cli_writes_the_report(report, tmp_path):
    path, _ = report
    out = tmp_path / "cli.html"
    result = CliRunner().invoke(cli, ["report", "--db", str(path.parent.parent / "report.duckdb"),
                                      "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and out.stat().st_size > 20_000


@pytest.fixture(scope="session")
def browser() -> tuple[str, str]:
    binary, driver, why = chromium.find_or_install()
    if not (binary and driver):
        pytest.skip(f"headless Chromium unavailable, report not opened in a browser: {why}")
    return binary, driver


def test_report_in_headless_chromium(report, browser, tmp_path):
    path, _ = report
    binary, driver = browser
    url = path.resolve().as_uri()
    shot = chromium.screenshot(binary, url, tmp_path / "report.png", 1280, 2400)
    assert chromium.png_size(shot) == (1280, 2400)
    assert shot.stat().st_size > 100_000  # a blank or broken page compresses to a few KB
    drawn_marks = """
        const marks = {};
        for (const s of document.querySelectorAll('section')) {
          marks[s.id] = [...s.querySelectorAll('svg path.series, svg rect.bar, svg rect.cell')]
            .filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 && b.height > 0; })
            .length;
        }
        document.querySelector('#by-model').scrollIntoView();
        const bar = document.querySelector('#by-model rect.bar').getBoundingClientRect();
        const hit = document.elementFromPoint(bar.x + bar.width / 2, bar.y + bar.height - 2);
        return {marks, hit: hit && hit.getAttribute('class'), scripts: document.scripts.length,
                requests: performance.getEntriesByType('resource').length,
                overflow: document.documentElement.scrollWidth - window.innerWidth};
    """
    with chromium.browser_page(binary, driver, url, 1280, 900) as page:
        state = page.run(drawn_marks)
        pdf = page.pdf()
    assert all(state["marks"][name] > 0 for name in CHART_SECTIONS), state["marks"]
    assert state["hit"] == "bar"  # the bar is painted where it claims to be, nothing covers it
    assert state["scripts"] == 0 and state["requests"] == 0  # opens offline: nothing fetched
    assert state["overflow"] <= 0  # no sideways scrolling on a 1280 px laptop screen
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3


def test_worst_examples_take_each_traces_lowest_verdict(tmp_path: Path):
    """Found in the store without reading trace text: one row per trace (its lowest score, then
    rubric), the lowest first, heavier sampling weight first among equal scores."""
    from evaluator.store.html_queries import ReportRows, lowest_scored
    from evaluator.store.scope import Scope

    db, now = tmp_path / "worst.duckdb", datetime.now(UTC)
    rows = [evaluation("a", "relevance", now, label="partially_relevant", score=0.4),
            evaluation("a", "faithfulness", now, label="unfaithful", score=0.0),
            evaluation("a", "hallucination", now, label="hallucinated", score=0.0),
            evaluation("b", "faithfulness", now, label="unfaithful", score=0.0, weight=10.0),
            evaluation("c", "relevance", now, label="mostly_relevant", score=0.75),
            evaluation("d", "relevance", now, label="relevant", score=1.0)]
    traces = [StoredTrace(Trace(trace_id=t, input=f"question {t}?", output=f"answer {t}."),
                          "random", 1.0) for t in "abcd"]
    Store.write_once(db, rows, traces)
    with Store(db, read_only=True) as store:
        worst = lowest_scored(store, ReportRows(Scope.everything(), None), 3)
    assert [(w.trace_id, w.rubric, w.score) for w in worst] == [
        ("b", "faithfulness", 0.0), ("a", "faithfulness", 0.0), ("c", "relevance", 0.75)]
    assert Trace.model_validate_json(worst[0].trace_json).output == "answer b."


def test_worst_examples_look_past_a_trace_that_fills_the_first_rows(tmp_path: Path):
    """The rows read first (lowest score, heaviest weight) all belong to one trace judged by
    many rubrics: the next traces are still found, as ranking every trace would."""
    from evaluator.store.html_queries import ReportRows, lowest_scored
    from evaluator.store.scope import Scope

    db, now = tmp_path / "worst.duckdb", datetime.now(UTC)
    rows = [evaluation("a", f"rubric-{i:03}", now, label="bad", score=0.0, weight=50.0)
            for i in range(40)]
    rows += [evaluation(t, "relevance", now, label="meh", score=score, weight=weight)
             for t, score, weight in (("b", 0.0, 5.0), ("c", 0.0, 5.0), ("d", 0.25, 99.0),
                                      ("e", 0.5, 1.0))]
    Store.write_once(db, rows)
    with Store(db, read_only=True) as store:
        worst = lowest_scored(store, ReportRows(Scope.everything(), None), 4)
    assert [(w.trace_id, w.rubric) for w in worst] == [
        ("a", "rubric-000"), ("b", "relevance"), ("c", "relevance"), ("d", "relevance")]
    assert all(w.trace_json is None for w in worst)  # no trace stored: none made up
