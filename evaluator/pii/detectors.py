"""Detectors for structured PII: e-mail, phone, payment card, IBAN, IP address, US SSN.

Each detector is a cheap regex that proposes candidates and a validator that keeps only the
real ones (Luhn, mod-97, the ipaddress module, libphonenumber, SSN range rules): validation is
what keeps order numbers, versions and timestamps unmasked. Each detector takes a TextScan and
looks only around the candidates it lists; overlaps between detectors are resolved by the masker.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterator

import phonenumbers

from evaluator.pii.match import PiiMatch
from evaluator.pii.scan import TextScan, count_digits

# ------------------------------------------------------------------ e-mail

_EMAIL = re.compile(
    r"(?<![\w.%+'-])[\w%+-](?:[\w.%+-]|'(?=\w))*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![\w-])"
)
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "bmp", "ico", "tif", "tiff", "heic"}
)
"""`icon@2x.png` is a retina asset, not an address: these are not top-level domains."""


_EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX = 64, 255


def find_emails(scan: TextScan) -> Iterator[PiiMatch]:
    if "@" not in scan.text:
        return
    text = scan.text
    ats = [(at, at + 1) for at in scan.positions_of("@")]
    for start, end in scan.windows(ats, _EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX):
        for found in _EMAIL.finditer(text, start, end):
            if found.group(2).lower() in _FILE_EXTENSIONS or text.endswith("://", 0, found.start()):
                continue  # a retina asset name, or the userinfo of a URL (often a token)
            value = found.group()
            yield PiiMatch("email", found.start(), found.end(), value, value.lower())


# ------------------------------------------------------------------ phone

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
    return max(MIN_PHONE_DIGITS, min(metadata.general_desc.possible_length))


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
        needed = MIN_PHONE_DIGITS if text.endswith("+", 0, start) else national_digits
        if count_digits(text[start:end]) >= needed:
            hints.append((start, end))
    for start, end in scan.windows(hints, *_PHONE_CONTEXT):
        for found in phonenumbers.PhoneNumberMatcher(text[start:end], region):
            canonical = phonenumbers.format_number(found.number, phonenumbers.PhoneNumberFormat.E164)
            value, offset = found.raw_string, start + found.start
            if value.startswith("(") and value.count("(") > value.count(")"):
                value, offset = value[1:], offset + 1  # "(+65 6123 4567)": keep the parenthesis
            if _not_a_phone_number(text, offset, value):
                continue
            yield PiiMatch("phone", offset, offset + len(value), value, canonical)


# ------------------------------------------------------------------ payment card

_CARD = re.compile(r"\d(?<![\w.,-]\d)(?<!\d[ -]\d)(?:[ -]?\d){12,}(?![\w-]|[.,]\d)")
_CARD_SEPARATOR = re.compile(r"[ -]")
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


def find_cards(scan: TextScan) -> Iterator[PiiMatch]:
    """Luhn-valid 13-19 digit numbers; a longer run is tried group by group from its start,
    so `4111 1111 1111 1111 12/26` still yields the card."""
    spans = scan.runs_with_digits(13)
    found_in_windows = (
        found for start, end in scan.windows(spans, 0, 2) for found in _CARD.finditer(scan.text, start, end)
    )
    for found in found_in_windows:
        run = found.group()
        if len(set(_CARD_SEPARATOR.findall(run))) > 1:
            continue
        groups = _CARD_SEPARATOR.split(run)
        for count in range(min(len(groups), _CARD_MAX_DIGITS), 0, -1):
            digits = "".join(groups[:count])
            if (
                _CARD_BRANDS.fullmatch(digits)
                and _card_grouping_ok(groups[:count])
                and luhn_valid(digits)
            ):
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

_IBAN = re.compile(r"(?<!\w)[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){10,30}")


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
        kept = 0
        for end, char in enumerate(found.group(), start=start):
            if char != " ":
                kept += 1
                if kept == length:
                    break
        else:
            continue
        end += 1
        if end < len(text) and text[end].isalnum():
            continue
        value = text[start:end]
        compact = value.replace(" ", "").upper()
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


_NUMBERING_BEFORE = re.compile(r"(?i)(?:version|section|chapter|clause|step|§)[\s_=:'\"\[]{0,6}\Z")
"""`__version__ = "3.5.0.1"`, `RFC 6749 section 4.1.2.1`: four-part numbering that happens to
be a valid address."""


def _ip_match(found: re.Match[str]) -> PiiMatch | None:
    """Keep real addresses. Loopback, unspecified, multicast and reserved ones (`127.0.0.1`,
    `0.0.0.0`, `224.0.0.1`, `255.255.255.255`) identify nobody."""
    value = found.group()
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return None
    if address.version == 4 and address.is_reserved:  # IPv6's "reserved" spans IPv4-mapped ones
        return None
    if _NUMBERING_BEFORE.search(found.string, max(0, found.start() - 16), found.start()):
        return None
    return PiiMatch("ip", found.start(), found.end(), value, str(address))


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
_SSN_LOOSE = re.compile(r"(\d(?<![\w-]\d)(?<!\d \d)\d\d)( ?)(\d{2})\2(\d{4})(?![\w-]|[.,]\d| \d)")
_SSN_CONTEXT = re.compile(r"(?i)(?<!<)\bssn|social[ -]security|\bss#")
"""Not `<SSN_1>`: a placeholder must not make the next 9-digit number look like an SSN."""
_SSN_CONTEXT_CHARS = 40
"""Space-separated or bare 9-digit numbers count only after an SSN keyword this close."""
_SSN_KEYWORDS = ("ssn", "social", "ss#")


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def find_ssns(scan: TextScan) -> Iterator[PiiMatch]:
    windows = scan.windows(scan.runs_with_digits(9), 0, 2)
    if not windows:
        return
    text = scan.text
    for start, end in windows:
        for found in _SSN_DASHED.finditer(text, start, end):
            if ssn_valid(*found.groups()):
                yield PiiMatch("ssn", found.start(), found.end(), found.group(), "".join(found.groups()))
    if not any(keyword in scan.lower for keyword in _SSN_KEYWORDS):
        return
    for start, end in windows:
        for found in _SSN_LOOSE.finditer(text, start, end):
            area, _, group, serial = found.groups()
            context = text[max(0, found.start() - _SSN_CONTEXT_CHARS) : found.start()]
            if ssn_valid(area, group, serial) and _SSN_CONTEXT.search(context):
                yield PiiMatch("ssn", found.start(), found.end(), found.group(), area + group + serial)
