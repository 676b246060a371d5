"""What trace text reads as: the look-alikes of the characters that spell a block marker.

A block marker is `<<<BEGIN NAME>>>` or `<<<END NAME>>>`. Trace text must not spell one in any
characters a reader (or a model) takes for these: compatibility forms such as full-width and
mathematical letters (Unicode NFKD folds them), letters with combining marks stacked on them (the
marks are dropped), and the confusables of `<`, `>` and of the letters of BEGIN and END listed in
Unicode's UTS #39 data (Greek, Cyrillic, Cherokee, Lisu, small capitals, arrowheads, guillemets,
much-less-than signs...), mapped here by hand. Other letters are left alone: a marker cannot form
without its angle brackets, and those are covered. `fold` writes the look-alikes that spell a
run of three angle brackets or a BEGIN/END word in ASCII, so that the ASCII rules of `neutralize`
then break them up; all other text is returned unchanged.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_ANGLES = {
    "<": "\u2039\u276e\u02c2\u02f1\u1438\u16b2\u3008\u27e8\u276c\u2770\u29fc\u2991\U0001d236",
    ">": "\u203a\u276f\u02c3\u02f2\u1433\u3009\u27e9\u276d\u2771\u29fd\u2992\U0001d237\U00016f3f",
    "<<": "\u00ab\u226a\u300a\u27ea\u2aa1",
    ">>": "\u00bb\u226b\u300b\u27eb\u2aa2",
    "<<<": "\u22d8\u2af7",
    ">>>": "\u22d9\u2af8",
}
_LETTERS = {
    "B": "\u0392\u0412\u0432\u0299\u13f4\u15f7\ua4d0\ua7b4\U00010282\U000102a1\U00010301",
    "E": "\u0395\u0415\u1d07\u13ac\u2d39\ua4f0\u22ff\U000118a6\U000118ae\U00010286",
    "G": "\u050c\u0262\u13c0\u13f3\ua4d6",
    "I": "\u0399\u0406\u04c0\u04cf\u01c0\u026a\u2d4f\ua4f2\u16c1\u2c92\u05c0\u07ca"
         "\U0001028a\U00010309",
    "N": "\u039d\u0274\u2c9a\ua4e0\U00010513",
    "D": "\u13a0\u15de\u15ea\ua4d3\u1d05",
}
LOOKALIKES = {char: ascii_form for ascii_form, chars in {**_ANGLES, **_LETTERS}.items()
              for char in chars}
"""Each look-alike and the ASCII it reads as."""
LESS_THAN_LOOKALIKES = _ANGLES["<"]
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
"""Combining marks (and variation selectors) that sit on a letter without changing what it
reads as."""

_TABLE = str.maketrans(LOOKALIKES)
_MARK = re.compile(f"[{_MARKS}]")
_MARKER_LIKE = re.compile(r"[<>]{3,}|(?<![A-Za-z])(?:BEGIN|END)(?![A-Za-z])")
"""On the folded text: what `neutralize`'s ASCII rules must see in ASCII to break up."""


def _class(ascii_form: str, *forms: str) -> str:
    return "[" + re.escape(ascii_form + "".join(_ANGLES.get(f, "") + _LETTERS.get(f, "")
                                                 for f in forms)) + "]"


def _suspect_pattern() -> re.Pattern[str]:
    """A quick test on the NFKD text that every marker-like folded text passes (and little
    else): two angle-like characters in a row, a triple one, or the letters of BEGIN or END,
    marks allowed in between."""
    marks = f"[{_MARKS}]*"
    angle = _class("<>", "<", ">", "<<", ">>", "<<<", ">>>")
    triple = _class("", "<<<", ">>>")
    words = [marks.join(_class(letter, letter) for letter in word) for word in ("BEGIN", "END")]
    return re.compile("|".join([f"{angle}{marks}{angle}", triple, *words]))


_SUSPECT = _suspect_pattern()


@functools.lru_cache(maxsize=4096)
def _reads_as(char: str) -> str:
    if char.isascii():
        return char
    return _MARK.sub("", unicodedata.normalize("NFKD", char)).translate(_TABLE)


def _fold_line(line: str) -> str:
    pieces = [_reads_as(char) for char in line]
    owner = [index for index, piece in enumerate(pieces) for _ in piece]
    folded, done = [], 0
    for match in _MARKER_LIKE.finditer("".join(pieces)):
        first, last = max(owner[match.start()], done), owner[match.end() - 1] + 1
        folded += [line[done:first], *pieces[first:last]]
        done = last
    return "".join([*folded, line[done:]])


def fold(text: str) -> str:
    """`text` with the look-alikes that spell a marker-like sequence written in ASCII (and the
    marks inside that sequence dropped); any other text comes back unchanged. Lines that cannot
    hold such a sequence are skipped after one regex search."""
    if text.isascii() or not _SUSPECT.search(unicodedata.normalize("NFKD", text)):
        return text
    return "\n".join(
        _fold_line(line) if _SUSPECT.search(unicodedata.normalize("NFKD", line)) else line
        for line in text.split("\n")
    )
