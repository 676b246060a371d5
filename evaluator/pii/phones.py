"""Phone numbers: libphonenumber's matcher, run only around digit runs no other detector
explained, plus what it does not read: international numbers dialled with `00` instead of `+`
(`0044 20 7946 0958`) and US vanity numbers (`1-800-FLOWERS`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

import phonenumbers

from evaluator.pii.match import PiiMatch
from evaluator.pii.scan import TextScan, count_digits

MIN_PHONE_DIGITS = 7
"""Text without a run of this many digits never pays for libphonenumber."""

_PHONE_CONTEXT = (8, 16)
"""Characters kept before/after a digit run when it is handed to the matcher: enough for a
leading `+` or `(`, an `ext. 123`, and the neighbours libphonenumber looks at to reject
`abc4155550134` or timestamps."""


_ID_CONTEXT = frozenset("-#/_.")
"""A bare digit string right after one of these is an id (`#issuecomment-2727603845`,
`/orders/4155550134`), a negative number or decimals, not a phone number someone wrote down."""
_DECIMAL = re.compile(r"[\[(]?[-+]?\d+\.\d+")


_PHONE_WORDS = re.compile(
    r"(?i)(?<!<)\b(?:call|phone|tel|mobile|cell|fax|whatsapp|sms|text|dial|ring|number|contact|reach)"
)
_PHONE_WORDS_REACH = 40


def _not_a_phone_number(text: str, start: int, value: str) -> bool:
    """What libphonenumber accepts but people mean as numbers: `126.09110641`, `-2096165693`,
    and digits with no formatting at all (`2147483647`, a seed) unless a phone word is near."""
    if value[0] in "-[" or _DECIMAL.fullmatch(value):
        return True
    if not value.isdigit():
        return False
    if text[start - 1 : start] in _ID_CONTEXT:
        return True
    around = text[max(0, start - _PHONE_WORDS_REACH) : start + len(value) + _PHONE_WORDS_REACH]
    return not _PHONE_WORDS.search(around)


def national_min_digits(region: str) -> int:
    """Fewest digits a number written without `+` can have in `region` (10 in the US), so
    8-digit order numbers and dates never reach the matcher there."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = metadata.general_desc.possible_length if metadata and metadata.general_desc else ()
    return max(MIN_PHONE_DIGITS, min(lengths, default=MIN_PHONE_DIGITS))


def _unexplained_digits(scan: TextScan, explained: list[PiiMatch]) -> Iterator[tuple[int, int]]:
    """The parts of each digit run that no other detector's match covers (a list of IP
    addresses is one long digit run, entirely explained)."""
    covered = scan.windows(((m.start, m.end) for m in explained), 0, 0)
    ends = [end for _, end in covered]
    for start, end in scan.digit_runs:
        index = bisect.bisect_right(ends, start)
        piece_start = start
        while index < len(covered) and covered[index][0] < end:
            if covered[index][0] > piece_start:
                yield piece_start, covered[index][0]
            piece_start = covered[index][1]
            index += 1
        if piece_start < end:
            yield piece_start, end


_INTERNATIONAL_00 = re.compile(r"(?<![\w+.])00(?=[1-9]\d{0,2}[ -])")
"""`00` before a country code is how most of the world dials out: read as `+`."""


def find_phones(
    scan: TextScan, region: str, national_digits: int, explained: list[PiiMatch]
) -> Iterator[PiiMatch]:
    """Valid phone numbers (libphonenumber's VALID leniency), numbers without `+` read in `region`.

    Digits inside another detector's match (a card, an IBAN, an IP) are not looked at again:
    the matcher is by far the most expensive step.
    """
    text = scan.text
    hints = []
    for start, end in _unexplained_digits(scan, explained):
        international = text.endswith("+", 0, start) or text.startswith("00", start)
        if count_digits(text[start:end]) >= (MIN_PHONE_DIGITS if international else national_digits):
            hints.append((start, end))
    for start, end in scan.windows(hints, *_PHONE_CONTEXT):
        # `+ ` keeps every offset: the matcher's spans index the original text.
        window = _INTERNATIONAL_00.sub("+ ", text[start:end])
        for found in phonenumbers.PhoneNumberMatcher(window, region):
            canonical = phonenumbers.format_number(found.number, phonenumbers.PhoneNumberFormat.E164)
            offset = start + found.start
            value = text[offset : start + found.end]
            if value.startswith("(") and value.count("(") > value.count(")"):
                value, offset = value[1:], offset + 1  # "(+65 6123 4567)": keep the parenthesis
            if _not_a_phone_number(text, offset, value):
                continue
            yield PiiMatch("phone", offset, offset + len(value), value, canonical)
    yield from _vanity_numbers(scan)


_VANITY = re.compile(
    r"(?<![\w+])(?P<country>\+?1[ .-]?)?(?:\((?P<paren>[2-9]\d\d)\)|(?P<area>[2-9]\d\d))[ .-]?"
    r"(?P<rest>[A-Z0-9](?:[ .-]?[A-Z0-9]){6,8})(?![\w-])"
)
_TOLL_FREE = frozenset({"800", "833", "844", "855", "866", "877", "888"})
_VANITY_MIN_LETTERS = 3


def _vanity_numbers(scan: TextScan) -> Iterator[PiiMatch]:
    """North American numbers spelled with capital letters (`1-800-FLOWERS`): a toll-free area
    code or a `1` before it, at least three letters, and the first seven characters must make
    a valid number. Prose is lower case, so `call 1-800 on the keypad` stays."""
    text = scan.text
    hints = [
        (start, end) for start, end in scan.digit_runs
        if end - start <= 9 and any(char.isupper() for char in text[end : end + 3])
    ]
    for start, end in scan.windows(hints, 4, 20):
        for found in _VANITY.finditer(text, start, end):
            area = found.group("paren") or found.group("area")
            rest = re.sub(r"[ .-]", "", found.group("rest"))
            if sum(char.isalpha() for char in rest) < _VANITY_MIN_LETTERS:
                continue
            if area not in _TOLL_FREE and not found.group("country"):
                continue
            number = phonenumbers.convert_alpha_characters_in_number(area + rest[:7])
            parsed = phonenumbers.parse("+1" + number)
            if phonenumbers.is_valid_number(parsed):
                canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                yield PiiMatch("phone", found.start(), found.end(), found.group(), canonical)
