"""Split raw text into words with exact character spans.

Placeholder rule set until the PTB-style splitter lands: runs of letters and
digits (with inner . - ' &), or single other characters.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+(?:[.\-'&]\w+)*\.?|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
