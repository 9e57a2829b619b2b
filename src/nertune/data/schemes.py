"""Tag schemes: recognise IO / IOB1 / IOB2 / BIOES (and BILOU) and convert everything to IOB2.

IOB2: every entity starts with B-.  IOB1: B- only where an entity directly
follows another of the same type.  BIOES: S- singletons and E- ends.  IO: bare types (`PER`), each
run of one type one entity.
"""

from __future__ import annotations

import re
from typing import Sequence

TAG_PATTERN = re.compile(r"^(O|([BIESLU])-(\S+))$")

IO_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_.$]*$")  # a bare type: PER, ORG, product
TAG_HELP = "tags must be O, B-/I-/E-/S-/U-/L-TYPE (IOB1, IOB2, BIOES, BILOU) or bare types (IO: PER)"
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


def prefix_and_type(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'), 'O' (or any label that is not PREFIX-TYPE) -> ('O', None), without checks:
    for labels already read (a model's, the Tagger's); files go through `split_tag`, which refuses bad shapes."""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIESLU":
        return tag[0], tag[2:]
    return "O", None


def entity_types(tags) -> list[str]:
    """The entity types of a label set or tag sequence, sorted."""
    return sorted({kind for tag in tags if (kind := prefix_and_type(tag)[1]) is not None})


def is_tag(tag: str) -> bool:
    """A tag of any scheme nertune reads (prefixed, O, or an IO bare type)."""
    return bool(TAG_PATTERN.match(tag) or IO_TAG.match(tag))


def detect_scheme(sentences_tags: Sequence[Sequence[str]]) -> str:
    """Return 'io', 'bioes', 'iob1' or 'iob2' for a whole file; ValueError(tag) for a file that mixes
    bare IO types with prefixed tags.

    A file is IOB1 when some entity starts with I- and every B-X directly
    follows an X tag (the only place IOB1 uses B-).
    """
    distinct = {t for tags in sentences_tags for t in tags}  # a handful: each is looked at once
    bare_types = {t for t in distinct if t != "O" and not TAG_PATTERN.match(t)}
    if bare_types:
        if any(TAG_PATTERN.match(t) and t != "O" for t in distinct):
            raise ValueError(next(t for tags in sentences_tags for t in tags if t in bare_types))  # the first in the file
        return "io"
    parts = {t: split_tag(t) for t in distinct}
    some_entity_starts_with_i = False
    every_b_follows_same_type = True
    for tags in sentences_tags:
        previous_type = None
        for tag in tags:
            prefix, entity_type = parts[tag]
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


def io_to_iob2(tags: Sequence[str]) -> list[str]:
    out, previous = [], "O"
    for tag in tags:
        out.append("O" if tag == "O" else ("I-" if tag == previous else "B-") + tag)
        previous = tag
    return out


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 -> BIOES: single-word entities S-, last words E-."""
    out = []
    for i, tag in enumerate(tags):
        if tag == "O":
            out.append(tag)
            continue
        continues = i + 1 < len(tags) and tags[i + 1] == "I-" + tag[2:]
        if tag.startswith("B-"):
            out.append(("B-" if continues else "S-") + tag[2:])
        else:
            out.append(("I-" if continues else "E-") + tag[2:])
    return out


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    if scheme == "io":
        return io_to_iob2(tags)
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
