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
from tests.support.rubric_files import rubrics_with_a_system_block_that_does_not_render

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


def test_the_agreement_card_does_not_compile_the_rubrics(report, tmp_path):
    """The card reads the rubrics' labels and scores: a template that would not compile (here a
    version nobody judged with) does not take the agreement off the page."""
    path, _ = report
    rubrics = rubrics_with_a_system_block_that_does_not_render(tmp_path)
    html = write_html_report(path.parent.parent / "report.duckdb", tmp_path / "r.html",
                             rubrics_dir=rubrics).read_text()
    agreement = section(html, "agreement")
    assert "relevance@v1" in agreement and "kappa" in agreement
    assert "could not be computed" not in agreement


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


@pytest.mark.parametrize("passes", [None, 1, 3])
def test_traffic_sums_equal_the_join_they_replace(tmp_path: Path, passes: int | None):
    """The charts read one rollup of the evaluations joined to their traces (per quarter hour):
    at every bucket size, and for the span and the rates by model and prompt version, its sums
    equal the same figures counted over every joined row, with and without `since`, whether the
    join is made in one pass or in several (each over the traces whose id hashes to one part)."""
    from evaluator.monitoring.html.data import BUCKETS, MONDAY
    from evaluator.store import html_queries as queries
    from evaluator.store.html_queries import ReportRows
    from evaluator.store.scope import Scope

    db, start = tmp_path / "traffic.duckdb", datetime(2026, 11, 2, 7, 59, 59, 999_999, tzinfo=UTC)
    rows, traces = [], []
    for i in range(120):
        at = start + timedelta(minutes=97 * i, microseconds=i)
        trace_id = f"t{i}"
        if i % 4:  # a quarter of the evaluations have no stored trace: created_at counts
            traces.append(StoredTrace(Trace(trace_id=trace_id, input="q?", output="a.",
                                            model=[None, "m1", "m2"][i % 3],
                                            prompt_version=f"v{i % 2}",
                                            start_time=at - timedelta(seconds=i)), "random", 1.0))
        for rubric, score in (("relevance", (i % 5) / 4), ("refusal", float(i % 2))):
            row = evaluation(trace_id, rubric, at, label="x", score=score, weight=1.0 + i % 7,
                             status="error" if i % 11 == 0 else "scored")
            rows.append(row.model_copy(update={"passed": score >= 0.5}))
    Store.write_once(db, rows, traces)
    when = "coalesce(t.start_time, e.created_at)"
    with Store(db, read_only=True) as store:
        for since in (None, start + timedelta(days=2)):
            selected = ReportRows(Scope.everything(), since)
            rolled = queries.traffic(store, selected, passes)
            every_row = (" FROM evaluations e LEFT JOIN traces t USING (trace_id)"
                         f" WHERE {selected.scope.judged_since(since).sql('e.run_id')}")
            joined = every_row + " AND e.status = 'scored' GROUP BY ALL ORDER BY ALL"
            first, last = store.conn.execute(f"SELECT min({when}), max({when})" + every_row,
                                             selected.params).fetchall()[0]
            assert (queries.totals(store, selected, rolled, queries.verdicts(store, selected)).first,
                    queries.totals(store, selected, rolled, queries.verdicts(store, selected)).last) == (first, last)
            for seconds, _ in BUCKETS:
                align = MONDAY if seconds == 7 * 86400 else 0
                origin = (int(first.timestamp()) - align) // seconds * seconds + align
                expected = store.conn.execute(
                    f"SELECT e.rubric, CAST(floor((epoch({when}) - $origin) / $seconds) AS BIGINT),"
                    " count(*), sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight),"
                    " sum(e.sample_weight * e.score) / sum(e.sample_weight)" + joined,
                    {**selected.params, "origin": origin, "seconds": seconds}).fetchall()
                got = queries.bucket_rates(store, rolled, origin, seconds)
                assert [(r.rubric, r.bucket, r.scored) for r in got] == [row[:3] for row in expected]
                assert [x for r in got for x in (r.pass_rate, r.mean_score)] == pytest.approx(
                    [x for row in expected for x in row[3:]])
            for column in ("model", "prompt_version"):
                expected = store.conn.execute(
                    f"SELECT coalesce(t.{column}, '(unknown)'), e.rubric, count(*),"
                    " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight)"
                    + joined, selected.params).fetchall()
                got = queries.pass_rate_by(store, rolled, column)  # type: ignore[arg-type]
                assert [(r.group, r.rubric, r.n) for r in got] == [row[:3] for row in expected]
                assert [r.pass_rate for r in got] == pytest.approx([row[3] for row in expected])


def test_totals_and_label_mix_equal_counting_every_row(tmp_path: Path):
    """The totals' counts, pass rate and judges and the label mix are sums over one count of
    the evaluations per rubric, status, label and judge: the same figures as counting every
    row, with and without `since`, and when `since` selects nothing."""
    from evaluator.store import html_queries as queries
    from evaluator.store.html_queries import ReportRows
    from evaluator.store.scope import Scope

    db, start = tmp_path / "totals.duckdb", datetime(2026, 11, 2, 8, tzinfo=UTC)
    rows = []
    for i in range(90):
        status = ("scored", "scored", "scored", "error", "skipped", "unscored")[i % 6]
        label, score = (("good", 1.0), ("meh", 0.5), ("bad", 0.0), ("meh", None))[i % 4]
        row = evaluation(f"t{i // 3}", ("relevance", "refusal")[i % 2], start + timedelta(hours=i),
                         label=label, score=score, status=status, weight=1.0 + i % 5,
                         judge=("judge-b", "judge-a", "judge-c")[i % 3])
        rows.append(row.model_copy(update={"passed": None if score is None else score >= 0.5}))
    Store.write_once(db, rows)
    with Store(db, read_only=True) as store:
        for since in (None, start + timedelta(hours=40), start + timedelta(days=30)):
            selected = ReportRows(Scope.everything(), since)
            every_row = selected.evaluations_sql
            got = queries.totals(store, selected, queries.traffic(store, selected),
                                 queries.verdicts(store, selected))
            expected = store.conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE e.status = 'scored'),"
                " count(*) FILTER (WHERE e.status = 'unscored'),"
                " count(*) FILTER (WHERE e.status = 'error'),"
                " count(*) FILTER (WHERE e.status = 'skipped'),"
                " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) FILTER (WHERE e.status = 'scored')"
                " / sum(e.sample_weight) FILTER (WHERE e.status = 'scored'),"
                " string_agg(DISTINCT e.judge, ', ' ORDER BY e.judge)" + every_row,
                selected.params).fetchall()[0]
            assert (got.evaluations, got.scored, got.unscored, got.errors, got.skipped) == expected[:5]
            assert got.pass_rate == pytest.approx(expected[5]) and got.judges == expected[6]
            labels = store.conn.execute(
                "SELECT e.rubric, e.label, count(*), sum(e.sample_weight), avg(e.score)" + every_row
                + " AND e.status = 'scored' AND e.label IS NOT NULL GROUP BY ALL"
                " ORDER BY e.rubric, avg(e.score) DESC", selected.params).fetchall()
            counted = queries.label_counts(store, queries.verdicts(store, selected))
            assert [(c.rubric, c.label, c.n) for c in counted] == [row[:3] for row in labels]
            assert [x for c in counted for x in (c.weight, c.mean_score)] == pytest.approx(
                [x for row in labels for x in row[3:]])
            assert (got.evaluations == 0) == (since == start + timedelta(days=30))


@pytest.mark.parametrize("passes", [1, 3])
def test_the_join_counts_the_distinct_traces_judged(tmp_path: Path, passes: int):
    """Every selected evaluation's trace stored: the distinct traces are the stored ones less
    those the join found no selected evaluation for (traces never judged, or judged before
    `since`), with no count of distinct ids; with an evaluation whose trace is not stored, they
    are counted apart. Both equal counting the distinct trace ids."""
    from evaluator.store import html_queries as queries
    from evaluator.store.html_queries import ReportRows
    from evaluator.store.scope import Scope

    db, start = tmp_path / "traces.duckdb", datetime(2026, 11, 2, 8, tzinfo=UTC)
    rows = [evaluation(f"t{i // 2}", ("relevance", "refusal")[i % 2], start + timedelta(hours=i),
                       label="good", score=1.0) for i in range(60)]
    traces = [StoredTrace(Trace(trace_id=f"t{i}", input="q?", output="a.", model=f"m{i % 2}"),
                          "random", 1.0) for i in range(40)]  # t30..t39 never judged
    Store.write_once(db, rows, traces)

    def check(counted_when: tuple[bool, bool, bool]) -> None:
        """`counted_when`: whether the join counts them, with each `since`."""
        with Store(db, read_only=True) as store:
            for since, counted in zip((None, start + timedelta(hours=25), start + timedelta(days=30)),
                                      counted_when, strict=True):
                selected = ReportRows(Scope.everything(), since)
                rolled = queries.traffic(store, selected, passes)
                [(distinct,)] = store.conn.execute("SELECT count(DISTINCT e.trace_id)"
                                                   + selected.evaluations_sql,
                                                   selected.params).fetchall()
                assert (rolled.traces is not None) == counted
                totals = queries.totals(store, selected, rolled, queries.verdicts(store, selected))
                assert totals.traces == distinct

    check((True, True, True))
    Store.write_once(db, [evaluation("not-stored", "relevance", start + timedelta(hours=50),
                                     label="good", score=1.0)])
    check((False, False, True))  # since 30 days: the evaluation without a trace is not selected
