"""Albanian text normalization for scoring speech recognition.

Raw WER compares strings as written; normalized WER forgives differences of spelling convention
that say nothing about recognition quality. The rules, in order:

1. Unicode NFC, so a decomposed ``e`` + U+0308 and the single character ``ë`` are the same.
2. Lower case (Python's ``str.lower``; Albanian needs nothing language-specific).
3. Apostrophe variants (’ ‘ ʼ ` ´) become ``'``. An apostrophe *between letters* stays, because
   it is part of Albanian words such as ``s'ka`` or ``t'i``; any other apostrophe is dropped.
4. Every other punctuation mark or symbol (Unicode categories P* and S*: . , ; : ! ? « » " - – —
   ( ) … and so on) becomes a space. Digits are kept as written; numbers are not spelled out.
5. Runs of whitespace become one space; leading and trailing space is removed.

``ë`` and ``ç`` are letters of the alphabet, never punctuation or accents to strip: ``është`` and
``eshte`` stay different words, as they are different spellings. Whisper's own English/basic
normalizers are not used because the basic one strips diacritics' neighbours inconsistently and
the English one rewrites English spellings.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({c: "'" for c in "’‘ʼ`´"})
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Normalize an Albanian transcript for scoring (rules in the module docstring)."""
    text = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    # protect apostrophes inside words, then turn every punctuation/symbol character into a space
    text = _INNER_APOSTROPHE.sub("\0", text)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    text = text.replace("\0", "'")
    return _SPACE.sub(" ", text).strip()
