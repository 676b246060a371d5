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
    r"|ya29\.[A-Za-z0-9_-]{20,}"  # Google OAuth access token
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab personal access token
    r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{20,}"  # PyPI upload token
    r"|SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"  # SendGrid
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"  # JWT
    r")(?![\w-])"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(?:bearer|basic|token)\s+([A-Za-z0-9._~+/-]+=*)")
_MIN_BEARER_CHARS = 10
_WEBHOOK = re.compile(
    r"https://(?:hooks\.slack\.com/(?:services|workflows|triggers)"
    r"|(?:\w+\.)?discord(?:app)?\.com/api/webhooks)/([A-Za-z0-9_/-]{16,})"
)
"""Slack and Discord incoming webhooks: the path is the credential (anyone can post with it)."""
_BARE_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_MIN_AWS_SECRET_ENTROPY = 4.0
"""A random 40-character base64 string scores ~4.9 bits a character; 40 hex digits (a commit)
can score at most 4 and are excluded anyway."""
_PROSE_PASSWORD = re.compile(
    r"(?i)\b(?:password|passwd|passcode|passphrase|pwd|pin)\s+(?:is|was)\s*:?\s*"
    r"[\"'\u201c]?([^\s\"'\u201d<>]{4,64}?)[\"'\u201d]?[.,;!?)]*(?=\s|$)"
)
"""`my password is Hunter2!`: a password said in a sentence (`password = ...` is an assignment,
judged by `_assigned_secret`)."""
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


def _mixed(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value)


def looks_like_bearer(value: str) -> bool:
    """After `Bearer`/`Basic`/`Token` a credential is expected, so a shorter or digit-less
    value counts too, unless it reads as words or a placeholder (`Bearer token required`,
    `Bearer YOUR_ACCESS_TOKEN`, `Bearer in mind`)."""
    if looks_random(value):
        return True
    words = _CODE_WORD.findall(value)
    if len(value) < _MIN_BEARER_CHARS or not words or sum(map(len, words)) >= 4 * len(words):
        return False  # words of four letters and more on average: an identifier or a placeholder
    return _shannon_entropy(value) >= _MIN_ENTROPY_BITS and (
        any(c.isdigit() for c in value) or sum(c.isupper() for c in value) >= 3
    )


def looks_like_spoken_password(value: str) -> bool:
    """`Hunter2!`, `qwerty123`, `739214` but not `required`, `incorrect`, `********`, `<SECRET_1>`:
    a digit or a symbol, and not one character repeated."""
    if len(set(value)) < 3 or value.startswith(("<", "$", "{")) or "(" in value:
        return False  # a mask, a placeholder or a call
    return any(c.isdigit() for c in value) or any(not c.isalnum() and c not in "-_." for c in value)


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
    if any(scheme in scan.lower for scheme in ("bearer", "basic", "token")):
        for found in _AUTH_SCHEME.finditer(text):
            if looks_like_bearer(found.group(1)):
                yield _secret(found.start(1), found.end(1), found.group(1))
    for start, end in scan.windows(scan.long_tokens, 0, 0):
        for found in _BARE_AWS_SECRET.finditer(text, start, end):
            value = found.group()
            parts = re.split(r"[/+]", value)
            if _mixed(value) and _shannon_entropy(value) >= _MIN_AWS_SECRET_ENTROPY and not all(map(_wordy, parts)):
                yield _secret(found.start(), found.end(), value)
    if "https://" in text:
        for found in _WEBHOOK.finditer(text):
            yield _secret(found.start(1), found.end(1), found.group(1))
    if any(word in scan.lower for word in ("pass", "pwd", "pin")):
        for found in _PROSE_PASSWORD.finditer(text):
            if looks_like_spoken_password(found.group(1)):
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
