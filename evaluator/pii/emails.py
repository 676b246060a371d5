"""E-mail addresses: as written (`jane@x.com`, full-width `＠`, IDN domains such as `bücher.de`,
quoted local parts such as `"john doe"@x.com`) and obfuscated against scrapers
(`jane [at] x [dot] com`, `jane dot doe at x dot com`).

Spelled-out forms are ordinary words, so they count only when both the `at` and a `dot` are
spelled out, the last label is a common top-level domain, and neither side is a function word
(`look at this dot com bubble` is prose). Bracketed forms (`[at]`, `(at)`, `{at}`, `<at>`,
`[@]`) are deliberate and need only a dotted domain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from evaluator.pii.match import PiiMatch
from evaluator.pii.scan import OBFUSCATION_HINT, TextScan

AT_SIGNS = "@\uff20\ufe6b"
"""`@`, full-width `＠` and small `﹫`: all three read as an at sign."""
_DOTS = ".\uff0e\u3002"
"""`.`, full-width `．` and the ideographic full stop `。` (IME input writes domains with it)."""

_EMAIL = re.compile(
    r"(?:\"(?:[^\"\\\r\n]|\\.){1,62}\"|(?<![\w.%+-])[\w%+-](?:[\w.%+-]|'(?=\w))*)"
    rf"[{AT_SIGNS}]((?:[^\W_](?:[\w-]{{0,61}}[^\W_])?[{_DOTS}])+([^\W\d_]{{2,24}}|xn--[a-z0-9-]{{1,59}}))(?![\w-])"
)
"""Local part (bare or quoted), any at sign, labels of letters in any script, a letter TLD. An
apostrophe may sit inside a local part (`o'connor@x.com`) and before one (`'jane@x.com'`, as
Python prints a string)."""
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "bmp", "ico", "tif", "tiff", "heic"}
)
"""`icon@2x.png` is a retina asset, not an address: these are not top-level domains."""
_EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX = 64, 255
_URL_USERINFO = re.compile(r"://[^\s/@]{0,64}\Z")
"""`https://oauth2:glpat-...@gitlab.com`: what precedes the `@` of a URL is a login, not an address."""

_BRACKETED_AT = r"\s*[\[({<]\s*(?:at|@)\s*[\])}>]\s*"
_SPELLED_AT = r"\s+at\s+"
_DOT = r"(?:\s*[\[({<]\s*(?:dot|\.)\s*[\])}>]\s*|\s+dot\s+|\.)"
_WORD = r"[\w%+-]{1,64}"
_OBFUSCATED = re.compile(
    rf"(?i)(?<![\w.%+-]){_WORD}(?:{_DOT}{_WORD}){{0,8}}?(?P<at>{_BRACKETED_AT}|{_SPELLED_AT})"
    rf"(?P<domain>(?:[^\W_][\w-]{{0,62}}{_DOT}){{1,8}}(?P<tld>[^\W\d_]{{2,24}}))(?![\w-])"
)
"""Bounded repetitions: a chain of `a dot a dot ...` costs linear time, not quadratic."""
_SPELLED_DOT = re.compile(r"(?i)\s+dot\s+|[\[({<]\s*(?:dot|\.)\s*[\])}>]")
_COMMON_TLDS = frozenset(
    "com org net edu gov mil int io co ai dev app info biz me tv us uk eu de fr es it nl be at ch se no dk "
    "fi ie pt pl cz ru ua cn jp kr in au nz ca mx br ar cl za ng ke sg hk tw my id ph vn tr il ae sa gr ro "
    "hu sk si hr rs bg lt lv ee is lu".split()
)
_FUNCTION_WORDS = frozenset(
    "a an the this that these those it its is are was be me my your our his her their him them us you we "
    "he she they i one some any all least most home work school noon night once first last here there "
    "what which who when where why how and or but not no so to of in on for by with from".split()
)


def find_emails(scan: TextScan) -> Iterator[PiiMatch]:
    text = scan.text
    ats = [(at, at + 1) for sign in AT_SIGNS for at in scan.positions_of(sign)]
    for start, end in scan.windows(ats, _EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX):
        for found in _EMAIL.finditer(text, start, end):
            if found.group(2).lower() in _FILE_EXTENSIONS or _URL_USERINFO.search(text, 0, found.start()):
                continue  # a retina asset name, or the userinfo of a URL (often a token)
            value = found.group()
            yield PiiMatch("email", found.start(), found.end(), value, _canonical(value))
    if OBFUSCATION_HINT.search(text):
        yield from _obfuscated(text)


def _canonical(value: str) -> str:
    for sign in AT_SIGNS[1:]:
        value = value.replace(sign, "@")
    for dot in _DOTS[1:]:
        value = value.replace(dot, ".")
    return value.lower()


def _obfuscated(text: str) -> Iterator[PiiMatch]:
    """A rejected candidate is retried from its domain: in `reach me at jane [at] x [dot] com`
    the address starts where `me at jane` ends."""
    position = 0
    while found := _OBFUSCATED.search(text, position):
        if not _plausible(found):
            position = found.start("domain")
            continue
        local = text[found.start() : found.start("at")]
        address = f"{_SPELLED_DOT.sub('.', local)}@{_SPELLED_DOT.sub('.', found.group('domain'))}"
        yield PiiMatch("email", found.start(), found.end(), found.group(), address.replace(" ", "").lower())
        position = found.end()


def _plausible(found: re.Match[str]) -> bool:
    tld = found.group("tld").lower()
    if tld in _FILE_EXTENSIONS:
        return False
    if found.group("at").strip()[:1] in "[({<":
        return True
    labels = re.split(_DOT, f"{found.string[found.start() : found.start('at')]}.{found.group('domain')}")
    return (
        bool(_SPELLED_DOT.search(found.group("domain")))
        and tld in _COMMON_TLDS
        and not any(label.lower() in _FUNCTION_WORDS for label in labels)
    )
