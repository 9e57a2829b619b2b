"""One record of words and tags, as JSON files and Hugging Face datasets hold them, checked in one place:
two lists of one length, integer tags named, every tag a tag, every word a non-empty string."""

from __future__ import annotations

from nertune.data.conll import MAX_LINE_CHARS
from nertune.data.schemes import split_tag
from nertune.errors import NertuneError

NAMES_FIX = "give --label-names O,B-PER,I-PER,... (in id order)"


def words_and_tags(
    words, tags, words_key: str, tags_key: str, names: list[str] | None, prefix: str, path: str, line: int | None = None,
    names_hint: str = "", names_fix: str = NAMES_FIX,
) -> tuple[list[str], list[str]]:  # fmt: skip
    """The record's words and string tags; `prefix` names the record in messages ("row 3: ", or "" when `line` does)."""

    def fail(message: str, fix: str) -> NertuneError:
        return NertuneError(prefix + message, path=path, line=line, fix=fix)

    if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
        got = [len(x) if isinstance(x, list) else type(x).__name__ for x in (words, tags)]
        raise fail(f"{words_key!r} and {tags_key!r} must be lists of the same length (got {got[0]} and {got[1]})", "one tag per word")
    if tags and any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
        if not names:
            raise fail(f"integer tags and no label names{names_hint}", names_fix)
        bad = next((t for t in tags if not (isinstance(t, int) and 0 <= t < len(names))), None)
        if bad is not None:
            raise fail(f"tag id {bad!r} but {len(names)} label names", "check --label-names")
        tags = [names[t] for t in tags]
    for tag in tags:
        if not isinstance(tag, str):
            raise fail(f"tag {tag!r} is not a string or an integer id", "tags are strings or integer ids")
        try:
            split_tag(tag)
        except ValueError:
            raise fail(f"unknown tag shape {tag[:40]!r}", "tags must be O or B-/I-/E-/S-/U-/L-TYPE (IOB1, IOB2, BIOES, BILOU)") from None
    bad_word = next((n for n, w in enumerate(words) if not isinstance(w, str) or not w or len(w) > MAX_LINE_CHARS), None)
    if bad_word is not None:
        raise fail(f"word {bad_word} is {words[bad_word]!r:.40}; every word must be a non-empty string", "check the tokens")
    return list(words), list(tags)
