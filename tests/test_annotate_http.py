"""`evaluator annotate` over HTTP, in-process: every route, the token and CSRF guards, escaping
and PII masking of what the page shows, blind labelling, undo, several annotators, and labels
stored through `labels import`'s path so `agreement` reads them."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluator.cli import main
from evaluator.humans.annotate.app import build_app
from evaluator.humans.annotate.queue import Progress, shown_order
from evaluator.humans.annotate.server import is_loopback, login_url
from evaluator.humans.labels import import_labels
from evaluator.rubrics.definitions import label_definitions
from evaluator.store import Store
from evaluator.store.annotation_queries import BatchLabel
from tests.support.annotate_page import (
    RAW_EMAIL,
    REGISTRY,
    TOKEN,
    PageClient,
    Reply,
    invoke,
    page_config,
)

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def db(annotation_batch, tmp_path: Path) -> Path:
    """A private copy of the judged store with its batch."""
    copy = tmp_path / "evaluator.duckdb"
    shutil.copyfile(annotation_batch[0], copy)
    return copy


@pytest.fixture
def batch(annotation_batch) -> str:
    return annotation_batch[1]


def client_for(db: Path, **options) -> PageClient:
    return PageClient(build_app(page_config(db, **options)))


@pytest.fixture
def page(db: Path) -> Iterator[PageClient]:
    client = client_for(db)
    yield client
    client.close()


def log_in(client: PageClient, annotator: str | None = "ana", form_page: str = "/?switch=1") -> str:
    """Start a session (and say who labels); the CSRF token of the forms on `form_page`."""
    assert client.get(f"/login?token={TOKEN}").status == 303
    token = CSRF.search(client.get(form_page).text)[1]
    if annotator is not None:
        reply = client.post("/annotator", {"csrf": token, "annotator": annotator, "next": "/"})
        assert reply.status == 303, reply.text
    return token


def batch_order(db: Path, batch: str) -> list[str]:
    with Store(db, read_only=True) as store:
        ids = [row[0] for row in store.conn.execute(
            "SELECT trace_id FROM label_batch_items WHERE batch_id = ?", [batch]).fetchall()]
    return shown_order(batch, ids)


def stored(db: Path) -> list[tuple]:
    with Store(db, read_only=True) as store:
        return store.conn.execute(
            "SELECT trace_id, annotator, rubric, rubric_version, label, note, source"
            " FROM human_labels ORDER BY imported_at, trace_id").fetchall()


def judge_labels(db: Path) -> dict[str, str]:
    with Store(db, read_only=True) as store:
        return dict(store.conn.execute(
            "SELECT trace_id, label FROM evaluations WHERE rubric = 'hallucination'").fetchall())


def label(client: PageClient, csrf: str, batch: str, position: int, value: str,
          note: str = "") -> Reply:
    return client.post(f"/batches/{batch}/items/{position}/label",
                       {"csrf": csrf, "label": value, "note": note})


# -- the guards -----------------------------------------------------------------------------------

def test_every_page_needs_the_start_up_token(page: PageClient, db: Path, batch: str):
    for path in ("/", f"/batches/{batch}", f"/batches/{batch}/items/1"):
        reply = page.get(path)
        assert reply.status == 403 and "needs the token" in reply.text, path
    for path in ("/annotator", f"/batches/{batch}/items/1/label", f"/batches/{batch}/undo"):
        assert page.post(path, {"label": "factual", "annotator": "x"}).status == 403, path
    wrong = page.get("/login?token=guess")
    assert wrong.status == 403 and "Set-Cookie" not in wrong.headers
    assert page.get("/").status == 403
    assert stored(db) == []

    good = page.get(f"/login?token={TOKEN}")
    assert good.status == 303 and good.location == "/"
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert page.get("/").status == 200


def test_static_files_are_public_and_every_response_forbids_inline_script(page: PageClient):
    script = page.get("/static/annotate.js")
    assert script.status == 200 and "data-key" in script.text
    assert page.get("/static/annotate.css").status == 200
    for reply in (script, page.get("/")):
        policy = reply.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_a_form_that_is_not_utf8_is_refused_with_a_page_not_a_server_error(page: PageClient, db: Path,
                                                                          batch: str):
    log_in(page)
    reply = page.request("POST", f"/batches/{batch}/items/1/label", data=b"csrf=\xff\xfe&label=factual",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 400 and "nothing was saved" in reply.text
    assert stored(db) == []


def test_posts_need_the_csrf_token_and_our_origin(page: PageClient, db: Path, batch: str):
    csrf = log_in(page)
    form = {"label": "factual", "note": ""}
    for data, headers in (
        (form, {}),
        ({**form, "csrf": "0" * 64}, {}),
        ({**form, "csrf": csrf}, {"Origin": "http://evil.example"}),
    ):
        reply = page.post(f"/batches/{batch}/items/1/label", data, headers=headers)
        assert reply.status == 403 and "CSRF" in reply.text
    assert stored(db) == []
    assert page.post(f"/batches/{batch}/items/1/label", {**form, "csrf": csrf}).status == 303
    assert len(stored(db)) == 1


# -- who labels -----------------------------------------------------------------------------------

def test_the_page_asks_who_labels_and_keeps_names_apart(page: PageClient, batch: str):
    csrf = log_in(page, annotator=None)
    ask = page.get(f"/batches/{batch}/items/1")
    assert ask.status == 200 and 'name="annotator"' in ask.text
    assert f'name="next" value="/batches/{batch}/items/1"' in ask.text
    for bad in ("", " ", "x" * 65, "tab\there"):
        reply = page.post("/annotator", {"csrf": csrf, "annotator": bad, "next": "/"})
        assert reply.status == 400 and "1 to 64 printable" in reply.text
    reply = page.post("/annotator", {"csrf": csrf, "annotator": " Zoë O'Neil ",
                                     "next": f"/batches/{batch}/items/1"})
    assert reply.status == 303 and reply.location == f"/batches/{batch}/items/1"
    assert "labelling as <b>Zoë O&#39;Neil</b>" in page.get(reply.location).text
    offsite = page.post("/annotator", {"csrf": csrf, "annotator": "bo", "next": "//evil.example/x"})
    assert offsite.location == "/"


def test_a_fixed_annotator_cannot_be_switched(db: Path, batch: str):
    client = client_for(db, annotator="ana", batch=batch)
    try:
        csrf = log_in(client, annotator=None, form_page=f"/batches/{batch}/items/1")
        assert client.get("/").location == f"/batches/{batch}"
        assert 'name="annotator"' not in client.get("/?switch=1").text
        assert client.post("/annotator", {"csrf": csrf, "annotator": "bo"}).status == 400
        assert "labelling as <b>ana</b>" in client.get(f"/batches/{batch}/items/1").text
    finally:
        client.close()


# -- the queue ------------------------------------------------------------------------------------

def test_index_lists_batches_with_each_annotators_progress(page: PageClient, db: Path,
                                                           batch: str):
    csrf = log_in(page)
    index = page.get("/").text
    assert f'href="/batches/{batch}"' in index and "nobody yet" in index
    label(page, csrf, batch, 1, "factual")
    label(page, csrf, batch, 2, "hallucinated")
    assert "ana 2 of 8" in page.get("/").text


def test_the_queue_goes_to_the_next_unlabelled_item_and_skips_wrap_around(page: PageClient,
                                                                          batch: str):
    csrf = log_in(page)
    assert page.get(f"/batches/{batch}").location == f"/batches/{batch}/items/1"
    assert page.get(f"/batches/{batch}?after=1").location == f"/batches/{batch}/items/2"
    reply = label(page, csrf, batch, 2, "factual")
    assert reply.location == f"/batches/{batch}?after=2"
    assert page.get(reply.location).location == f"/batches/{batch}/items/3"
    assert page.get(f"/batches/{batch}?after=8").location == f"/batches/{batch}/items/1"
    assert page.get(f"/batches/{batch}?after=1").location == f"/batches/{batch}/items/3"


def import_file(db: Path, path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with Store(db) as store:
        assert import_labels(path, store, REGISTRY).imported == len(rows)


def test_done_page_when_every_item_is_labelled(page: PageClient, db: Path, batch: str,
                                               tmp_path: Path):
    csrf = log_in(page)
    order = batch_order(db, batch)
    import_file(db, tmp_path / "most.jsonl", [
        {"trace_id": trace_id, "rubric": "hallucination", "label": "factual", "annotator": "ana"}
        for trace_id in order[:-1]])
    assert page.get(f"/batches/{batch}").location == f"/batches/{batch}/items/8"
    label(page, csrf, batch, 8, "factual")
    done = page.get(f"/batches/{batch}")
    assert done.status == 200 and "8 of 8 labelled" in done.text
    assert "evaluator agreement --rubric hallucination" in done.text


def test_unknown_batches_and_positions_are_404_with_a_reason(page: PageClient, batch: str):
    log_in(page)
    missing = page.get("/batches/batch-nope")
    assert missing.status == 404 and "labels export` prints the batch id" in missing.text
    assert page.get(f"/batches/{batch}/items/9").status == 404
    assert "items 1 to 8, not 9" in page.get(f"/batches/{batch}/items/9").text
    assert page.get(f"/batches/{batch[:12]}").location == f"/batches/{batch}/items/1"


# -- what an item shows ---------------------------------------------------------------------------

def test_an_item_shows_masked_escaped_content_definitions_and_keys(page: PageClient, db: Path,
                                                                   batch: str):
    log_in(page)
    order = batch_order(db, batch)
    assert "t-hostile" in order, "the odd traces hallucinate, so the batch takes every failure"
    html = page.get(f"/batches/{batch}/items/{order.index('t-hostile') + 1}").text
    assert RAW_EMAIL not in html and "&lt;EMAIL_1&gt;" in html
    for raw in ("<script>alert", '"><img', "</textarea><b>", "<b>bold</b>"):
        assert raw not in html
    assert "&lt;script&gt;alert(&#34;input&#34;)&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;&lt;b&gt;bold&lt;/b&gt;" in html and "&amp; covers water" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    hallucination = REGISTRY.get("hallucination")
    for key, (name, definition) in enumerate(label_definitions(hallucination).items(), start=1):
        assert f'value="{name}" data-key="{key}"' in html
        assert definition.split('"')[0] in html
    assert 'data-key="s"' in html and 'data-key="u"' in html and 'data-focus-key="t"' in html
    assert "0 of 8 labelled" in html and "Item " in html


def test_labelling_is_blind_unless_verdicts_are_shown_after_labelling(db: Path, batch: str):
    reasoning = "[offline heuristic baseline]"  # how every reasoning of the offline judge starts
    for show_verdicts in (False, True):
        client = client_for(db, show_verdicts=show_verdicts)
        try:
            csrf = log_in(client, annotator=f"blind-{show_verdicts}")
            before = client.get(f"/batches/{batch}/items/1").text
            assert "verdict" in before and 'id="verdicts"' not in before and reasoning not in before
            reply = label(client, csrf, batch, 1, "factual")
            after = client.get(f"/batches/{batch}/items/1").text
            assert "You labelled this <b>factual</b>" in after
            if show_verdicts:
                assert reply.location == f"/batches/{batch}/items/1"
                assert 'id="verdicts"' in after and reasoning in after
            else:
                assert reply.location == f"/batches/{batch}?after=1"
                assert 'id="verdicts"' not in after
        finally:
            client.close()


def test_label_definitions_come_from_the_rubric_bullets():
    definitions = label_definitions(REGISTRY.get("faithfulness"))
    assert list(definitions) == list(REGISTRY.get("faithfulness").labels)
    assert definitions["mostly_faithful"].startswith("the core answer is supported; one minor")
    assert definitions["mostly_faithful"].endswith("without contradicting it.")


# -- writing labels -------------------------------------------------------------------------------

def test_labels_are_stored_like_labels_import_and_replaced_by_a_new_choice(page: PageClient,
                                                                           db: Path, batch: str):
    csrf = log_in(page)
    order = batch_order(db, batch)
    label(page, csrf, batch, 1, "hallucinated", note="  made up a robot  ")
    assert stored(db) == [(order[0], "ana", "hallucination", None, "hallucinated",
                           "made up a robot", f"annotate {batch}")]
    label(page, csrf, batch, 1, "hallucinated", note="made up a robot")
    label(page, csrf, batch, 1, "factual")
    assert [(row[0], row[4], row[5]) for row in stored(db)] == [(order[0], "factual", None)]
    page_text = page.get(f"/batches/{batch}/items/1").text
    assert 'class="label chosen"' in page_text and "You labelled this <b>factual</b>" in page_text


def test_off_menu_labels_and_long_notes_are_refused_and_nothing_is_stored(page: PageClient,
                                                                          db: Path, batch: str):
    csrf = log_in(page)
    off_menu = label(page, csrf, batch, 1, "<b>nonsense</b>")
    assert off_menu.status == 400 and "not on the menu" in off_menu.text
    assert "<b>nonsense</b>" not in off_menu.text
    too_long = label(page, csrf, batch, 1, "factual", note="x" * 4001)
    assert too_long.status == 400 and "at most 4000" in too_long.text
    assert stored(db) == []


def test_undo_removes_the_annotators_last_labels_of_the_page_only(page: PageClient, db: Path,
                                                                  batch: str, tmp_path: Path):
    csrf = log_in(page)
    order = batch_order(db, batch)
    assert page.post(f"/batches/{batch}/undo", {"csrf": csrf}).location == f"/batches/{batch}"
    import_file(db, tmp_path / "earlier.jsonl", [
        {"trace_id": order[5], "rubric": "hallucination", "label": "factual", "annotator": "ana"}])
    label(page, csrf, batch, 1, "factual")
    label(page, csrf, batch, 2, "hallucinated")
    assert 'id="undo"' in (html := page.get(f"/batches/{batch}/items/3").text)
    assert 'id="undo" disabled' not in html
    first = page.post(f"/batches/{batch}/undo", {"csrf": csrf})
    assert first.location == f"/batches/{batch}/items/2"
    second = page.post(f"/batches/{batch}/undo", {"csrf": csrf})
    assert second.location == f"/batches/{batch}/items/1"
    assert page.post(f"/batches/{batch}/undo", {"csrf": csrf}).location == f"/batches/{batch}"
    assert [row[0] for row in stored(db)] == [order[5]]


def test_two_annotators_label_apart_and_agreement_sees_both(db: Path, batch: str):
    judge = judge_labels(db)
    order = batch_order(db, batch)[:4]
    opposite = {"factual": "hallucinated", "hallucinated": "factual"}
    for annotator in ("ana", "bo"):
        client = client_for(db)
        try:
            csrf = log_in(client, annotator)
            for position, trace_id in enumerate(order, start=1):
                flip = annotator == "bo" and position == 2
                value = opposite[judge[trace_id]] if flip else judge[trace_id]
                assert label(client, csrf, batch, position, value).status == 303
            assert "4 of 8 labelled" in client.get(f"/batches/{batch}/items/5").text
        finally:
            client.close()
    assert sorted((row[0], row[1]) for row in stored(db)) == sorted(
        (trace_id, who) for trace_id in order for who in ("ana", "bo"))
    report = json.loads(invoke("agreement", "--json", "--db", str(db), "--rubric",
                               "hallucination", "--n-boot", "0"))
    [group] = [g for g in report["groups"] if g["rubric"] == "hallucination"]
    assert group["inter_annotator"]["annotators"] == ["ana", "bo"]
    assert group["inter_annotator"]["n_units"] == 4


# -- the store is shared with the sink ------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from evaluator.store import Store
with Store(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print(time.time(), flush=True)
"""


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process (as `evaluator sink` does per batch) holding the file read-write; it
    prints the time it let go."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_label_waits_out_another_writer_or_says_nothing_was_saved(db: Path, batch: str):
    patient, hasty = client_for(db), client_for(db, lock_timeout_s=0.1)
    try:
        csrf = log_in(patient)
        log_in(hasty, annotator="bo")
        holder = hold_write_lock(db, 1.0)
        busy = label(hasty, csrf, batch, 1, "factual")
        assert busy.status == 503 and "nothing was saved" in busy.text
        assert label(patient, csrf, batch, 1, "factual").status == 303
        written = time.time()
        assert holder.stdout is not None and float(holder.stdout.readline()) <= written
        holder.wait(30)
        assert [row[1] for row in stored(db)] == ["ana"]
        assert label(hasty, csrf, batch, 1, "factual").status == 303
        assert [row[1] for row in stored(db)] == ["ana", "bo"]
    finally:
        patient.close()
        hasty.close()


# -- the command ----------------------------------------------------------------------------------

def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["evaluator", "annotate", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def test_the_command_says_in_one_line_what_is_missing(monkeypatch, capsys, db: Path, batch: str,
                                                      tmp_path: Path):
    for args, message in (
        (["--db", str(tmp_path / "none.duckdb")], "export a batch first"),
        (["--db", str(db), "--rubric", "refusal"], "no annotation batch of rubric refusal"),
        (["--db", str(db), "--batch", "batch-nope"], "no annotation batch 'batch-nope'"),
        (["--db", str(db), "--annotator", " "], "1 to 64 printable characters"),
    ):
        code, out, err = run_main(monkeypatch, capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_main(monkeypatch, capsys, "--db", str(db), "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_the_command_prints_a_login_link_serves_the_page_and_stops_on_ctrl_c(db: Path, batch: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "evaluator", "annotate", "--db", str(db), "--port", "0",
         "--batch", batch[:10], "--annotator", "ana"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = re.search(r"open (http://127\.0\.0\.1:\d+/login\?token=[\w-]+)", first)
        assert url, first
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browser.open(url[1], timeout=30) as reply:
            html = reply.read().decode()
            assert reply.url.endswith(f"/batches/{batch}/items/1")
        assert "labelling as <b>ana</b>" in html and "0 of 8 labelled" in html
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped" in out, err


def test_only_loopback_addresses_count_as_local():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"))
    assert login_url("::1", 8765, "T") == "http://[::1]:8765/login?token=T"


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.integers(0, n - 1)), st.integers(0, n))))
def test_next_position_is_the_first_unlabelled_item_after_the_current_one(case):
    total, labelled, after = case
    ids = [f"t{i}" for i in range(total)]
    progress = Progress(ids, {ids[i]: BatchLabel(ids[i], "ana", "factual", None) for i in labelled})
    position = progress.next_position(after)
    if len(labelled) == total:
        assert position is None
        return
    assert position is not None and ids[position - 1] not in progress.labels
    steps = (position - after - 1) % total  # items passed over on the way, wrapping around
    assert all(ids[(after + k) % total] in progress.labels for k in range(steps))
