"""What text reads as, for tests of neutralizing look-alike block markers.

Written independently of evaluator.rubrics.lookalikes: the look-alikes the test corpora use,
mapped to the ASCII a reader sees.
"""

from __future__ import annotations

import unicodedata

LOOKALIKES = {
    **dict.fromkeys("\u2039\u276e\u02c2\u1438\u3008\u27e8", "<"),
    **dict.fromkeys("\u203a\u276f\u02c3\u1433\u3009\u27e9", ">"),
    **dict.fromkeys("\u00ab\u226a\u27ea\u300a", "<<"), **dict.fromkeys("\u00bb\u226b\u27eb\u300b", ">>"),
    "\u22d8": "<<<", "\u22d9": ">>>",
    **dict.fromkeys("\u0395\u0415\u1d07", "E"), **dict.fromkeys("\u039d\u0274", "N"),
    **dict.fromkeys("\u13a0\u1d05", "D"), **dict.fromkeys("\u0392\u0412", "B"),
    **dict.fromkeys("\u0399\u0406", "I"), "\u041e": "O", "\u0422": "T", "\u0420": "P",
}
"""What a reader sees in the look-alikes of the corpus (after NFKD, combining marks dropped)."""


def looks_like(text: str) -> str:
    """The text as it reads: compatibility forms folded, marks dropped, look-alikes mapped."""
    return "".join(LOOKALIKES.get(char, char) for char in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(char))
