"""Redact one known secret (the judge's API key) from text, in the encodings it is echoed in.

A provider's error can echo the key as sent, upper- or lower-cased, URL-encoded (any mix of
`%XX` escapes, either hex case), in hex, or inside base64 (a `Basic` header, a JSON blob),
where its characters depend on how the key is aligned in the encoded bytes. Each of these is
one alternative of one regex built per secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

REDACTED = "[redacted]"

_MIN_ENCODED_CHARS = 8
"""Shorter secrets are redacted only as written: their encoded forms would match by chance."""
_BASE64_RUN = r"[A-Za-z0-9+/_-]*={0,2}"
"""The rest of the base64 token around a key found inside it: the whole token goes."""


def _url_encoded(secret: str) -> str:
    """Each character as itself or as its `%XX` UTF-8 escapes (matched ignoring case)."""
    parts = []
    for char in secret:
        escaped = "".join(f"%{byte:02x}" for byte in char.encode("utf-8"))
        literal = "\\+| " if char == " " else re.escape(char)
        parts.append(f"(?:{literal}|{re.escape(escaped)})")
    return "".join(parts)


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 characters that encode only the secret's bytes, for each of the three
    alignments the secret can have in a longer encoded string, standard and URL-safe."""
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        first = (offset * 8 + 5) // 6  # characters that hold a bit of the prefix
        last = (offset + len(raw)) * 8 // 6  # characters fully inside the secret
        core = encoded[first:last]
        cores.update((core, core.replace("+", "-").replace("/", "_")))
    return {core for core in cores if len(core) >= _MIN_ENCODED_CHARS}


@lru_cache(maxsize=8)
def _pattern(secret: str) -> re.Pattern[str]:
    alternatives = [f"(?i:{_url_encoded(secret)})"]
    if len(secret) >= _MIN_ENCODED_CHARS:
        raw = secret.encode("utf-8")
        alternatives.append(f"(?i:{binascii.hexlify(raw).decode()})")
        cores = sorted(_base64_cores(raw), key=len, reverse=True)
        alternatives += [f"{_BASE64_RUN}{re.escape(core)}{_BASE64_RUN}" for core in cores]
    return re.compile("|".join(alternatives))


def redact_secret(text: str, secret: str | None) -> str:
    """`text` with every echo of `secret` (see the module docstring) replaced by `[redacted]`."""
    if not secret or not text:
        return text
    return _pattern(secret).sub(REDACTED, text)
