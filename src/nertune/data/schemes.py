"""Tag schemes: recognise IOB1 / IOB2 / BIOES and convert everything to IOB2.

IOB2: every entity starts with B-.  IOB1: B- only where an entity directly
follows another of the same type.  BIOES: S- singletons and E- ends.
"""

from __future__ import annotations

import re
from typing import Sequence

TAG_PATTERN = re.compile(r"^(O|([BIESLU])-(\S+))$")

# BILOU is BIOES under other letters.
_BILOU = {"L": "E", "U": "S"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None). Raises ValueError on other shapes."""
    match = TAG_PATTERN.match(tag)
    if not match:
        raise ValueError(tag)
    if match.group(1) == "O":
        return "O", None
    prefix = _BILOU.get(match.group(2), match.group(2))
    return prefix, match.group(3)


def detect_scheme(sentences_tags: Sequence[Sequence[str]]) -> str:
    """Return 'bioes', 'iob1' or 'iob2' for a whole file.

    A file is IOB1 when some entity starts with I- and every B-X directly
    follows an X tag (the only place IOB1 uses B-).
    """
    some_entity_starts_with_i = False
    every_b_follows_same_type = True
    for tags in sentences_tags:
        previous_type = None
        for tag in tags:
            prefix, entity_type = split_tag(tag)
            if prefix in ("E", "S"):
                return "bioes"
            if prefix == "I" and previous_type != entity_type:
                some_entity_starts_with_i = True
            if prefix == "B" and previous_type != entity_type:
                every_b_follows_same_type = False
            previous_type = entity_type
    if some_entity_starts_with_i and every_b_follows_same_type:
        return "iob1"
    return "iob2"


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    out = []
    previous_type = None
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and previous_type != entity_type:
            out.append(f"B-{entity_type}")
        else:
            out.append(tag)
        previous_type = entity_type
    return out


def bioes_to_iob2(tags: Sequence[str]) -> list[str]:
    out = []
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix in ("B", "S"):
            out.append(f"B-{entity_type}")
        elif prefix in ("I", "E"):
            out.append(f"I-{entity_type}")
        else:
            out.append("O")
    return out


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    if scheme == "iob1":
        return iob1_to_iob2(tags)
    if scheme == "bioes":
        return bioes_to_iob2(tags)
    return list(tags)


def is_valid_iob2(tags: Sequence[str]) -> bool:
    previous_type = None
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and previous_type != entity_type:
            return False
        previous_type = entity_type
    return True
