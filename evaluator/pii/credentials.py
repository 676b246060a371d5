"""Detector for credentials: provider API keys, bearer tokens, JWTs, private keys, and
high-entropy values assigned to `api_key=` / `token:` / `password:`-like names.

Only the secret itself is masked (`Authorization: Bearer <SECRET_1>`, `api_key=<SECRET_1>`),
so the judge still sees what kind of thing was there.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from evaluator.pii.match import PiiMatch
from evaluator.pii.scan import TextScan

_PREFIXED_TOKEN = re.compile(
    r"(?<![\w-])(?:"
    r"sk-[A-Za-z0-9_-]{20,}"  # OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-)
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe secret / restricted
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"  # JWT
    r")(?![\w-])"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/-]+=*)")
_KEY_WORDS = ("key", "secret", "token", "pass", "pwd", "auth", "credential")
_KEY_BEFORE = re.compile(
    r"(?i)(api[_-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_-]?key|auth|credential)"
    r"[\w.-]*[\"']?\s*\Z"
)
"""A credential-like name right before a `:` or `=`: `OPENAI_API_KEY=`, `"apiKey": `, `token: `."""
_KEY_REACH = 48
_VALUE_AFTER = re.compile(r"\s*[\"']?([^\s'\"`,;:=&<>(){}\[\]]{1,4096}=*)")
"""Stops at the next `:` or `=` (base64 padding aside), so `a=b=c=...` stays linear."""
_AUTH_SCHEME_REACH = 12
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----"
    r"([A-Za-z0-9+/=:,\s-]{1,16384}?)"
    r"-----END \1PRIVATE KEY-----"
)
"""The body allows PEM headers (`Proc-Type: 4,ENCRYPTED`) but not `<`, so a masked key stays
masked; it is bounded (an RSA-8192 key is ~6.5 KB) so a BEGIN without an END stays cheap."""

_MIN_SECRET_CHARS = 16
_MIN_PASSWORD_CHARS = 8
_MIN_ENTROPY_BITS = 2.5
"""Per character. Random tokens score 3.2 (16 hex digits) to 5.5; `aaaaaaaaaaaaaaa1` scores 0.3."""
_CODE_PATH_SEPARATOR = re.compile(r"[._]")
_CODE_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+")


def _wordy(part: str) -> bool:
    """A part of a code path (`boto3_credentials.info`, `MCPRequestHandler.get_oauth2_headers`):
    few digits, and camelCase/snake_case words three or more letters long on average. The
    letters of a random token split into words of about two."""
    if sum(c.isdigit() for c in part) > 3:
        return False
    words = _CODE_WORD.findall(part)
    return not words or sum(map(len, words)) >= 3 * len(words)


def _shannon_entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_random(value: str) -> bool:
    """Long, letters and digits, high-entropy, not a code path: a key, not a word. The digit
    tells a random token (a 32-character one lacks one about once in 300) from identifiers
    code puts after `token:` or `auth =` (`CompletionTokensDetails`, `AUTHORITY_REGEX.match`)."""
    if len(value) < _MIN_SECRET_CHARS:
        return False
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    parts = _CODE_PATH_SEPARATOR.split(value)
    if (len(parts) > 1 or not value.islower()) and all(_wordy(part) for part in parts):
        return False
    return _shannon_entropy(value) >= _MIN_ENTROPY_BITS


def looks_like_password(value: str) -> bool:
    """Passwords are short and human-made: ask for two character classes one of which is a
    digit or a symbol, so `changeme`, `********` and code (`key.group`, `self.Password`) stay
    visible while `Summer2024` and `P@ssw0rd` do not."""
    if len(value) < _MIN_PASSWORD_CHARS:
        return False
    digit = any(c.isdigit() for c in value)
    symbol = any(not c.isalnum() and c not in "._-" for c in value)
    letters = any(c.islower() for c in value) + any(c.isupper() for c in value)
    return (digit or symbol) and letters + digit + symbol >= 2


def _secret(start: int, end: int, value: str) -> PiiMatch:
    return PiiMatch("secret", start, end, value, value)


def find_secrets(scan: TextScan) -> Iterator[PiiMatch]:
    text = scan.text
    for start, end in scan.windows(scan.long_tokens, _AUTH_SCHEME_REACH, 1):
        for found in _PREFIXED_TOKEN.finditer(text, start, end):
            value = found.group()
            if value.startswith("sk-") and not any(c.isdigit() for c in value):
                continue  # a long hyphenated slug such as sk-this-is-not-a-key
            yield _secret(found.start(), found.end(), value)
        for found in _AUTH_SCHEME.finditer(text, start, end):
            if looks_random(found.group(1)):
                yield _secret(found.start(1), found.end(1), found.group(1))
    if scan.assignments and any(word in scan.lower for word in _KEY_WORDS):
        for at in scan.assignments:
            yield from _assigned_secret(text, at)
    if "-----BEGIN" in text:
        for found in _PRIVATE_KEY.finditer(text):
            body = found.group(2)
            start = found.start(2) + len(body) - len(body.lstrip())
            value = body.strip()
            if value:
                yield _secret(start, start + len(value), value)


def _assigned_secret(text: str, at: int) -> Iterator[PiiMatch]:
    """The value after the `:` or `=` at `at`, when a credential-like name precedes it."""
    reach = max(0, at - _KEY_REACH)
    if not any(word in text[reach:at].lower() for word in _KEY_WORDS):
        return
    key = _KEY_BEFORE.search(text, reach, at)
    found = _VALUE_AFTER.match(text, at + 1) if key else None
    if key is None or found is None:
        return
    value = found.group(1).rstrip(".:")
    is_password = key.group(1).lower().startswith(("pass", "pwd"))
    if looks_like_password(value) if is_password else looks_random(value):
        yield _secret(found.start(1), found.start(1) + len(value), value)
