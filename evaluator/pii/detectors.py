"""Detectors for structured PII: payment card, IBAN, IP address, US SSN (e-mail and phone
detectors live in emails.py and phones.py and are re-exported here).

Each detector is a cheap regex that proposes candidates and a validator that keeps only the
real ones (Luhn, mod-97, the ipaddress module, libphonenumber, SSN range rules): validation is
what keeps order numbers, versions and timestamps unmasked. Each detector takes a TextScan and
looks only around the candidates it lists; overlaps between detectors are resolved by the masker.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from evaluator.pii.emails import find_emails
from evaluator.pii.match import PiiMatch
from evaluator.pii.phones import find_phones, national_min_digits
from evaluator.pii.scan import TextScan, count_digits

__all__ = [
    "find_cards", "find_emails", "find_ibans", "find_ips", "find_phones", "find_ssns", "national_min_digits",
]

_JOINERS = "_\u00a0\u202f"
"""Separators TextScan's digit runs stop at but numbers are written with: `4111_1111_...`
(identifiers), no-break spaces (word processors, HTML `&nbsp;`)."""
_NUMBERING_BEFORE = re.compile(
    r"(?i)(?:version|release|build|section|chapter|clause|paragraph|step|rule|§)[\s_=:'\"\[]{0,6}\Z"
)
"""`__version__ = "3.5.0.1"`, `RFC 6749 section 4.1.2.1`, `release 123.45.6789`: numbering that
happens to look like an address or an SSN."""


def joined_runs(scan: TextScan, minimum_digits: int) -> list[tuple[int, int]]:
    """Digit runs, with runs that one joiner character separates merged, holding at least
    `minimum_digits` digits."""
    text = scan.text
    merged: list[tuple[int, int]] = []
    for start, end in scan.digit_runs:
        if merged and start == merged[-1][1] + 1 and text[start - 1] in _JOINERS:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(start, end) for start, end in merged if count_digits(text[start:end]) >= minimum_digits]


# ------------------------------------------------------------------ payment card

_CARD = re.compile(
    r"\d(?<![\w.,/-]\d)(?<!\d[ ./\u00a0\u202f-]\d)(?:[ ._/\u00a0\u202f-]?\d){12,}(?![\w/-]|[.,]\d)"
)
_CARD_SEPARATOR = re.compile(r"[ ._/\u00a0\u202f-]")
_HUMAN_MIX = frozenset({" ", "-"})
"""The one mix of separators people type within a card number (`4111-1111 1111-1111`)."""
_CARD_MAX_DIGITS = 19
_CARD_BRANDS = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})"  # Visa
    r"|(?:5[1-5]\d\d|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"  # Diners Club
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|(?:5[06-8]|6\d)\d{11,17}"  # Maestro, Discover, UnionPay, RuPay
)
"""Issuer prefixes with their lengths: a Luhn check alone passes one random number in ten, so
this is what keeps 13-digit millisecond timestamps, seeds and ISBNs unmasked."""


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_grouping_ok(groups: list[str]) -> bool:
    """4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4, or one unbroken run."""
    sizes = [len(group) for group in groups]
    if len(sizes) == 1:
        return True
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _odd_grouping_ok(groups: list[str]) -> bool:
    """Any other grouping of a whole run (`4111 111111 111111`, `41 11 1111 ...`), as long as
    no group is a lone digit: `3.14159265358979` and `1_000_000_000_000_000` are numbers."""
    return len(groups) <= 8 and all(len(group) >= 2 for group in groups)


def _consistent_groups(run: str) -> list[str]:
    """The digit groups of `run` up to where its separator changes (`4111 1111 1111 1111 12/26`
    stops before `/26`); spaces and dashes count as one."""
    groups = _CARD_SEPARATOR.split(run)
    separators = _CARD_SEPARATOR.findall(run)
    if not separators:
        return groups
    allowed = _HUMAN_MIX if separators[0] in _HUMAN_MIX else {separators[0]}
    kept = next((index for index, separator in enumerate(separators) if separator not in allowed), len(separators))
    return groups[: kept + 1]


def find_cards(scan: TextScan) -> Iterator[PiiMatch]:
    """Luhn-valid 13-19 digit numbers; a longer run is tried group by group from its start,
    so `4111 1111 1111 1111 12/26` still yields the card."""
    spans = joined_runs(scan, 13)
    found_in_windows = (
        found for start, end in scan.windows(spans, 0, 2) for found in _CARD.finditer(scan.text, start, end)
    )
    for found in found_in_windows:
        run = found.group()
        groups = _consistent_groups(run)
        for count in range(min(len(groups), _CARD_MAX_DIGITS), 0, -1):
            digits = "".join(groups[:count])
            whole = count == len(groups)
            grouping_ok = _card_grouping_ok(groups[:count]) or (whole and _odd_grouping_ok(groups))
            if _CARD_BRANDS.fullmatch(digits) and grouping_ok and luhn_valid(digits):
                length = len(digits) + count - 1
                yield PiiMatch("card", found.start(), found.start() + length, run[:length], digits)
                break


# ------------------------------------------------------------------ IBAN

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
"""Total IBAN length per country (SWIFT IBAN registry)."""

_IBAN = re.compile(r"(?<!\w)[A-Za-z]{2}[0-9]{2}(?:[ \u00a0\u202f-]?[A-Za-z0-9]){10,30}")
_IBAN_SEPARATORS = " \u00a0\u202f-"
"""Spaces (also no-break ones, as word processors and web pages write them) and dashes."""


def iban_valid(compact: str) -> bool:
    """ISO 13616 check: the country's length, then mod 97 == 1 over the rearranged digits."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


def find_ibans(scan: TextScan) -> Iterator[PiiMatch]:
    """IBANs with or without grouping spaces, tried where two letters precede a digit run.
    The regex may run into the next word (`... 3000 IBAN`), so each candidate is cut at its
    country's length before checking."""
    text = scan.text
    for run_start, _ in scan.digit_runs:
        start = run_start - 2
        if start < 0 or not text[start:run_start].isalpha() or not (found := _IBAN.match(text, start)):
            continue
        length = IBAN_LENGTHS.get(found.group()[:2].upper())
        if length is None:
            continue
        kept, end = 0, start
        for char in found.group():
            end += 1
            if char not in _IBAN_SEPARATORS:
                kept += 1
                if kept == length:
                    break
        else:
            continue
        if end < len(text) and text[end].isalnum():
            continue
        value = text[start:end]
        compact = "".join(char for char in value if char not in _IBAN_SEPARATORS).upper()
        if iban_valid(compact):
            yield PiiMatch("iban", start, end, value, compact)


# ------------------------------------------------------------------ IP addresses

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{1,4}:|::")
_IPV6_MAX_CHARS = 45
"""`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`: how far an address reaches from its hint."""


def _ip_match(found: re.Match[str]) -> PiiMatch | None:
    """Keep real addresses. Loopback, unspecified, multicast and reserved ones (`127.0.0.1`,
    `0.0.0.0`, `224.0.0.1`, `255.255.255.255`) identify nobody."""
    value = found.group()
    try:
        address = ipaddress.ip_address(_without_leading_zeros(value))
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return None
    if address.version == 4 and address.is_reserved:  # IPv6's "reserved" spans IPv4-mapped ones
        return None
    if _NUMBERING_BEFORE.search(found.string, max(0, found.start() - 16), found.start()):
        return None
    return PiiMatch("ip", found.start(), found.end(), value, str(address))


def _without_leading_zeros(value: str) -> str:
    """`010.001.002.003` as `10.1.2.3`: the ipaddress module refuses leading zeros (octal in
    some parsers), but people pad octets to line them up."""
    if "." in value and ":" not in value:
        return ".".join(str(int(part)) for part in value.split("."))
    return value


def find_ips(scan: TextScan) -> Iterator[PiiMatch]:
    if not scan.digit_runs:
        return  # IPv6 addresses without a digit are not counted (see below)
    text = scan.text
    spans = [(start, end) for start, end in scan.runs_with_digits(4) if "." in text[start:end]]
    for start, end in scan.windows(spans, 0, 2):
        for found in _IPV4.finditer(text, start, end):
            if match := _ip_match(found):
                yield match
    hints = [found.span() for found in _IPV6_HINT.finditer(text)] if scan.assignments else []
    for start, end in scan.windows(hints, _IPV6_MAX_CHARS, _IPV6_MAX_CHARS + 1):
        for found in _IPV6.finditer(text, start, end):
            if _address_like(found.group()) and (match := _ip_match(found)):
                yield match


def _address_like(candidate: str) -> bool:
    """Not prose (`cafe::babe`, no digit) and not a Python slice (`[1::3]`, `[::2]`): two short
    decimal groups are code; `fe80::1` and `2001::7` have a hex letter or a full group."""
    groups = [group for group in candidate.replace(".", ":").split(":") if group]
    if not any(char.isdigit() for char in candidate):
        return False
    return len(groups) > 2 or any(len(group) == 4 or not group.isdigit() for group in groups)


# ------------------------------------------------------------------ US SSN

_SSN_DASHED = re.compile(r"(\d(?<![\w-]\d)\d\d)-(\d{2})-(\d{4})(?![\w-]|[.,]\d)")
_SSN_DOTTED = re.compile(r"(\d(?<![\w.-]\d)\d\d)\.(\d{2})\.(\d{4})(?![\w-]|[.,]\d)")
"""3.2.4 digits with dots is an SSN's shape, not a version's (those are short) or a date's."""
_SSN_LOOSE = re.compile(
    r"(\d(?<![\w-]\d)(?<!\d[ /\u00a0\u202f]\d)\d\d)([ /\u00a0\u202f]?)(\d{2})\2(\d{4})"
    r"(?![\w-]|[.,]\d|[ /\u00a0\u202f]\d)"
)
_SSN_CONTEXT = re.compile(r"(?i)(?<!<)\bssn|social[ -]security|\bss#")
"""Not `<SSN_1>`: a placeholder must not make the next 9-digit number look like an SSN."""
_SSN_CONTEXT_CHARS = 40
"""Space-, slash-separated or bare 9-digit numbers count only after an SSN keyword this close."""
_SSN_KEYWORDS = ("ssn", "social", "ss#")


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def find_ssns(scan: TextScan) -> Iterator[PiiMatch]:
    windows = scan.windows(joined_runs(scan, 9), 0, 2)
    if not windows:
        return
    text = scan.text
    for start, end in windows:
        for pattern in (_SSN_DASHED, _SSN_DOTTED):
            for found in pattern.finditer(text, start, end):
                if ssn_valid(*found.groups()) and not (
                    pattern is _SSN_DOTTED and _NUMBERING_BEFORE.search(text, max(0, found.start() - 16), found.start())
                ):
                    yield PiiMatch("ssn", found.start(), found.end(), found.group(), "".join(found.groups()))
    if not any(keyword in scan.lower for keyword in _SSN_KEYWORDS):
        return
    for start, end in windows:
        for found in _SSN_LOOSE.finditer(text, start, end):
            area, _, group, serial = found.groups()
            context = text[max(0, found.start() - _SSN_CONTEXT_CHARS) : found.start()]
            if ssn_valid(area, group, serial) and _SSN_CONTEXT.search(context):
                yield PiiMatch("ssn", found.start(), found.end(), found.group(), area + group + serial)
