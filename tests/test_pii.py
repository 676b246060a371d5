"""PII masking: the acceptance bar on the test set (recall, false positives), then behaviour."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.core.errors import ConfigError
from evaluator.core.records import Message, Trace, canonical_json, sha256_hex
from evaluator.pii import ALL_KINDS, PiiConfig, PiiMasker, PiiMatch, resolve_overlaps

DATA = Path(__file__).parent / "data"
MIN_RECALL = 0.99
MAX_FALSE_POSITIVE_RATE = 0.02
PLACEHOLDER = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|IP|SECRET|SSN|NATIONAL_ID|DOB|PASSPORT)_[0-9a-f]+>")


def _jsonl(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


POSITIVES = _jsonl("pii_positive.jsonl")
LOOKALIKES = _jsonl("pii_lookalikes.jsonl")
HARD = _jsonl("pii_recall.jsonl")
"""Planted values in the forms the textbook regexes miss (tests/data/make_pii_recall.py)."""
HARD_CLEAN = _jsonl("pii_recall_clean.jsonl")
MIN_RECALL_PER_KIND = {
    "email": 0.95, "phone": 0.95, "card": 0.95, "iban": 0.95, "ssn": 0.95, "ip": 0.95, "secret": 0.95,
    "national_id": 0.9, "dob": 0.9, "passport": 0.9,
}
MAX_HARD_FALSE_POSITIVES = 0.02


@pytest.fixture(scope="module")
def masker() -> PiiMasker:
    return PiiMasker()


# ------------------------------------------------------------------ the acceptance bar


def test_test_sets_are_large_and_cover_every_kind():
    assert len(POSITIVES) >= 200 and len(LOOKALIKES) >= 200
    assert {row["kind"] for row in POSITIVES} <= ALL_KINDS
    assert all(row["value"] in row["text"] for row in POSITIVES + HARD)
    assert len(HARD) >= 300 and {row["kind"] for row in HARD} == ALL_KINDS == set(MIN_RECALL_PER_KIND)


def _found(masker: PiiMasker, row: dict) -> bool:
    """Masked away, and by a detector of the planted kind."""
    return row["value"] not in masker.mask_text(row["text"]) and any(
        match.kind == row["kind"] for match in masker.find(row["text"])
    )


def test_recall_per_kind_on_obfuscated_and_unusual_forms(masker):
    missed = [row for row in HARD if not _found(masker, row)]
    for row in missed:
        print(f"  missed {row['kind']} ({row['variant']}): {row['value']!r} in {row['text']!r}")
    recall = {}
    for kind in sorted(MIN_RECALL_PER_KIND):
        rows = [row for row in HARD if row["kind"] == kind]
        recall[kind] = 1 - sum(row in missed for row in rows) / len(rows)
        print(f"PII recall {kind}: {recall[kind]:.3f} of {len(rows)}")
    assert all(recall[kind] >= floor for kind, floor in MIN_RECALL_PER_KIND.items()), recall


def test_false_positives_on_pii_free_look_alikes_of_the_unusual_forms(masker):
    changed = [(row["text"], masker.mask_text(row["text"])) for row in HARD_CLEAN]
    changed = [(text, masked) for text, masked in changed if masked != text]
    for text, masked in changed:
        print(f"  false positive: {text!r} -> {masked!r}")
    rate = len(changed) / len(HARD_CLEAN)
    print(f"false positives {len(changed)}/{len(HARD_CLEAN)}")
    assert len(HARD_CLEAN) >= 140 and rate <= MAX_HARD_FALSE_POSITIVES


def test_recall_and_false_positive_rate_on_the_test_set(masker):
    missed = [row for row in POSITIVES if row["value"] in masker.mask_text(row["text"])]
    changed = [row["text"] for row in LOOKALIKES if masker.mask_text(row["text"]) != row["text"]]
    recall = 1 - len(missed) / len(POSITIVES)
    fp_rate = len(changed) / len(LOOKALIKES)
    summary = (
        f"PII recall {recall:.4f} ({len(POSITIVES) - len(missed)}/{len(POSITIVES)}), "
        f"false-positive rate {fp_rate:.4f} ({len(changed)}/{len(LOOKALIKES)})"
    )
    print(summary)
    for row in missed:
        print(f"  missed {row['kind']}: {row['value']!r} in {row['text']!r}")
    for text in changed:
        print(f"  false positive: {text!r} -> {masker.mask_text(text)!r}")
    assert recall >= MIN_RECALL and fp_rate <= MAX_FALSE_POSITIVE_RATE, summary


@pytest.mark.parametrize("kind", sorted({row["kind"] for row in POSITIVES}))
def test_each_kind_is_found_as_that_kind(masker, kind):
    rows = [row for row in POSITIVES if row["kind"] == kind]
    labelled = sum(
        any(m.kind == kind and row["value"] in m.value for m in masker.find(row["text"])) for row in rows
    )
    assert labelled / len(rows) >= 0.95, f"{kind}: {labelled}/{len(rows)} found under the right kind"


# ------------------------------------------------------------------ detectors


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("card 4111-1111-1111-1111, exp 09/27", "card", "4111-1111-1111-1111"),
        ("amex 3782 822463 10005 ok", "card", "3782 822463 10005"),
        ("card 4111 1111 1111 1111 12/26", "card", "4111 1111 1111 1111"),
        ("IBAN GB82 WEST 1234 5698 7654 32 IBAN", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("to fe80::1ff:fe23:4567:890a.", "ip", "fe80::1ff:fe23:4567:890a"),
        ("from 10.0.0.1.", "ip", "10.0.0.1"),
        ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
        ("Authorization: Bearer abcDEF123456ghiJKL789", "secret", "abcDEF123456ghiJKL789"),
        ("SSN 123 45 6789", "ssn", "123 45 6789"),
        ("contact 'jane@x.com' now", "email", "jane@x.com"),  # as Python prints a str
        ("{'email': 'jane.doe@example.org'}", "email", "jane.doe@example.org"),
        ("mail o'connor@x.com today", "email", "o'connor@x.com"),
    ],
)
def test_find_reports_kind_and_exact_span(masker, text, kind, value):
    matches = masker.find(text)
    assert [(m.kind, m.value) for m in matches] == [(kind, value)]
    assert text[matches[0].start : matches[0].end] == value


@pytest.mark.parametrize(
    "text",
    [
        "ref 4111 1111 1111 1112",  # 16 digits, Luhn fails
        "IBAN GB83 WEST 1234 5698 7654 32",  # checksum fails
        "000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000",  # SSA-invalid SSNs
        "999.1.1.1 and 1.2.3.4.5 and 127.0.0.1 and ::1",  # not an address, or identifies nobody
        "bare 123456789 without an SSN keyword",
        "sk-ating and task-runner-service-with-long-name",
        "icon@2x.png",
    ],
)
def test_look_alikes_are_left_alone(masker, text):
    assert masker.find(text) == []


def test_bare_digits_are_a_phone_number_only_next_to_a_phone_word(masker):
    assert masker.mask_text("my cell is 4155550134") == "my cell is <PHONE_1>"
    assert masker.find("INT32_MAX = 2147483647; seed(4155550134)") == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=Summer2024", "password=<SECRET_1>"),
        ("password = get_password()", "password = get_password()"),
        ("password: changeme", "password: changeme"),
        ("auth_token: 9f8e7d6c5b4a39281706f5e4", "auth_token: <SECRET_1>"),
        ("token = base64.b64encode(raw)", "token = base64.b64encode(raw)"),
    ],
)
def test_assigned_secrets_are_values_not_code(masker, text, masked):
    assert masker.mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "token=" * 16_000, "10.0.0.1 " * 10_000, "4111 " * 20_000, "-----BEGIN PRIVATE KEY-----\nAAAA" * 3000,
        "a dot " * 16_000 + "at b dot com", "x [at] " * 14_000, "password is " * 8_000, "Bearer " * 14_000,
        "DOB " * 25_000, "BSN " * 25_000, "passport no " * 8_000, "4111_" * 20_000, "1-800-" * 16_000,
    ],
)
def test_adversarial_text_costs_linear_time(masker, text):
    started = time.process_time()
    masker.mask_text(text)
    assert time.process_time() - started < 5, "masking ~100 KB took too long: quadratic somewhere?"


def test_phone_region_reads_national_numbers():
    assert PiiMasker().find("ring 020 7946 0958") == []
    uk = PiiMasker(PiiConfig(phone_region="GB"))
    assert [m.canonical for m in uk.find("ring 020 7946 0958")] == ["+442079460958"]


def test_kinds_limit_what_is_masked():
    only_email = PiiMasker(PiiConfig(kinds=frozenset({"email"})))
    assert only_email.mask_text("a@b.com or 415-555-0134") == "<EMAIL_1> or 415-555-0134"


@pytest.mark.parametrize(
    "config",
    [{"mode": "redact"}, {"kinds": frozenset({"email", "driving_licence"})}, {"phone_region": "XX"}],
)
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        PiiConfig(**config)


def test_overlaps_keep_the_longest_then_earliest():
    long = PiiMatch("email", 0, 20, "x" * 20, "x")
    inner = PiiMatch("secret", 5, 12, "y" * 7, "y")
    later = PiiMatch("phone", 15, 30, "z" * 15, "z")
    tie_a, tie_b = PiiMatch("ip", 40, 45, "a" * 5, "a"), PiiMatch("phone", 43, 48, "b" * 5, "b")
    assert resolve_overlaps([later, inner, tie_b, long, tie_a]) == [long, tie_a]


# ------------------------------------------------------------------ placeholders and modes


def test_numbering_is_stable_and_same_value_same_placeholder(masker):
    text = "Mail a@x.com, then B@Y.com, then a@x.com again; call (415) 555-0134 or 415.555.0134."
    assert masker.mask_text(text) == (
        "Mail <EMAIL_1>, then <EMAIL_2>, then <EMAIL_1> again; call <PHONE_1> or <PHONE_1>."
    )


def test_shared_placeholders_continue_numbering_across_fields(masker):
    seen: dict = {}
    assert masker.mask_text("from a@x.com", seen) == "from <EMAIL_1>"
    assert masker.mask_text("to b@x.com cc a@x.com", seen) == "to <EMAIL_2> cc <EMAIL_1>"


def test_hash_mode_is_stable_across_traces_and_keyed_by_salt():
    text = "a@x.com and 10.1.2.3"
    first = PiiMasker(PiiConfig(mode="hash", hash_salt="s1")).mask_text(text)
    again = PiiMasker(PiiConfig(mode="hash", hash_salt="s1")).mask_text("Contact A@X.COM")
    other = PiiMasker(PiiConfig(mode="hash", hash_salt="s2")).mask_text(text)
    assert re.fullmatch(r"<EMAIL_[0-9a-f]{6}> and <IP_[0-9a-f]{6}>", first)
    assert again == "Contact " + first.split(" and ")[0]
    assert other != first


def test_off_mode_is_identity():
    off = PiiMasker(PiiConfig(mode="off"))
    for row in POSITIVES[:50]:
        assert off.mask_text(row["text"]) == row["text"]


def test_masking_is_idempotent_on_the_test_set(masker):
    hashed = PiiMasker(PiiConfig(mode="hash"))
    for row in POSITIVES:
        for current in (masker, hashed):
            once = current.mask_text(row["text"])
            assert current.mask_text(once) == once
            assert current.find(once) == []


def test_placeholders_are_never_nested(masker):
    text = "token: sk-proj-abc123DEF456ghi789JKL012 mail jane@x.com via https://ghp_" + "a1" * 18 + "@github.com"
    masked = masker.mask_text(text)
    assert "<" not in PLACEHOLDER.sub("", masked) and ">" not in PLACEHOLDER.sub("", masked)


# ------------------------------------------------------------------ traces


def _trace(**fields) -> Trace:
    base = {
        "trace_id": "t-1",
        "input": [Message(role="user", content="I am jane@x.com, call 415-555-0134")],
        "system": "Support bot. Escalations go to ops@corp.example.com",
        "context": ["Customer jane@x.com, card 4111 1111 1111 1111", "no pii here"],
        "output": "Sure jane@x.com, I will call (415) 555-0134.",
        "error": "upstream 10.2.3.4 refused",
        "user_id": "jane@x.com",
        "tags": ["vip", "owner:ops@corp.example.com"],
        "metadata": {"ip": "203.0.113.9", "count": 3, "nested": {"email": "jane@x.com"}},
    }
    return Trace(**{**base, **fields})


def test_mask_trace_masks_every_field_with_one_map(masker):
    trace = _trace()
    masked = masker.mask_trace(trace)
    assert masked.input[0].content == "I am <EMAIL_1>, call <PHONE_1>"
    assert masked.system == "Support bot. Escalations go to <EMAIL_2>"
    assert masked.context == ["Customer <EMAIL_1>, card <CARD_1>", "no pii here"]
    assert masked.output == "Sure <EMAIL_1>, I will call <PHONE_1>."
    assert masked.error == "upstream <IP_1> refused"
    assert masked.user_id == "<EMAIL_1>"
    assert masked.tags == ["vip", "owner:<EMAIL_2>"]
    assert masked.metadata == {"ip": "<IP_2>", "count": 3, "nested": {"email": "<EMAIL_1>"}}
    assert masked.pii_masked is True
    assert trace.output == "Sure jane@x.com, I will call (415) 555-0134." and trace.pii_masked is False


def test_mask_trace_hashes_the_masked_input(masker):
    chat = _trace()
    masked = canonical_json([{"role": "user", "content": "I am <EMAIL_1>, call <PHONE_1>"}])
    assert masker.mask_trace(chat).input_hash == sha256_hex(masked)
    plain = _trace(input="Is jane@x.com subscribed?")
    assert masker.mask_trace(plain).input_hash == sha256_hex(canonical_json("Is <EMAIL_1> subscribed?"))


def test_mask_trace_twice_changes_nothing_and_keeps_the_raw_hash(masker):
    once = masker.mask_trace(_trace())
    assert masker.mask_trace(once) == once


def test_mask_trace_off_mode_only_sets_the_hash():
    trace = _trace(input="plain jane@x.com")
    result = PiiMasker(PiiConfig(mode="off")).mask_trace(trace)
    assert result.input == "plain jane@x.com" and result.output == trace.output
    assert result.pii_masked is False and result.input_hash == sha256_hex(canonical_json("plain jane@x.com"))


# ------------------------------------------------------------------ properties

PII_FRAGMENTS = [row["value"] for row in POSITIVES[::3]] + [
    "@", ".", ":", "::", "-", " ", "(", ")", "+", "<", ">", "_1>", "<EMAIL_1>", "0", "7", "4111", "eyJ",
    "sk-", "Bearer ", "api_key=", "SSN ", "\n", "com", "x@", "1.2.3.4", "2001:db8::",
]
PROPERTY_MASKERS = (PiiMasker(), PiiMasker(PiiConfig(mode="hash", hash_salt="property")))
mixed_text = st.lists(
    st.one_of(st.sampled_from(PII_FRAGMENTS), st.text(max_size=8)), max_size=12
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), mixed_text))
def test_masking_never_raises_leaves_no_detectable_pii_and_is_idempotent(text):
    for current in PROPERTY_MASKERS:
        masked = current.mask_text(text)
        assert current.find(masked) == []
        assert current.mask_text(masked) == masked



def test_short_pii_free_texts_are_scanned_once_and_text_with_pii_every_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23.4: metadata keys, ids and labels recur in every trace; the masker remembers the
    short ones its detectors found clean (and only those: nothing personal is kept)."""
    import evaluator.pii.masker as masker_module

    scans: list[str] = []
    real_scan = masker_module.TextScan

    def counting_scan(text: str):
        scans.append(text)
        return real_scan(text)

    monkeypatch.setattr(masker_module, "TextScan", counting_scan)
    masker = PiiMasker()
    for _ in range(3):
        assert masker.mask_text("source_trace_id") == "source_trace_id"  # a long token: scanned
        assert masker.mask_text("mail bob@example.com") == "mail <EMAIL_1>"
    assert scans.count("source_trace_id") == 1
    assert scans.count("mail bob@example.com") == 3
    document = "a plain sentence, key=value, nothing personal in it; " * 3
    too_long = "x" * (masker_module.CLEAN_MEMO_CHARS + 1)
    for _ in range(2):
        masker.mask_text(document)
        masker.mask_text(too_long)
    assert scans.count(document) == 1, "a retrieved document recurs: remembered"
    for _ in range(2):
        assert masker.mask_text("You answer from the handbook.") == "You answer from the handbook."
    assert scans.count("You answer from the handbook.") == 1, "nothing to start a detector from"
    assert scans.count(too_long) == 2, "longer texts are not remembered"
    filler = [f"f{n} " * (masker_module.CLEAN_MEMO_CHARS // 6) for n in
              range(masker_module.CLEAN_MEMO_TOTAL_CHARS // (masker_module.CLEAN_MEMO_CHARS // 2) + 1)]
    for text in filler:
        masker.mask_text(text)
    masker.mask_text(document)
    assert scans.count(document) == 2, "past its size the memo is forgotten"
    assert len(masker._clean) <= masker_module.CLEAN_MEMO_ENTRIES
