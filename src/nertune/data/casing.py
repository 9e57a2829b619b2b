"""Casing classes for uncased encoders, fed to the model as token types.

An uncased tokenizer lowercases everything: "Apple" and "apple" become the
same wordpieces, and capitalisation is the strongest single NER cue in
English. So each wordpiece gets the casing class of the word it belongs to,
through BERT's `token_type_ids` (the segment A/B embedding, unused when a
window holds one sequence): the token type table grows to one row per class.

    0  special tokens, padding, words with no letters and no digits ("," "--")
    1  lower     "apple", also letters without case (CJK, Arabic)
    2  Title     "Apple", "A", "Mr."
    3  UPPER     "EU", "U.S." (two or more letters, all upper case)
    4  mixed     an upper-case letter after the first: "McDonald", "iPhone"
    5  digits    any digit: "1996-08-22", "F1", "3rd"

The scheme's name is stored in the model's config.json (`nertune_casing`), so
training, evaluate, the Tagger, serving and ONNX exports all read it from the
model directory; a model without the field gets all-zero token types, as a
plain Hugging Face model does.
"""

from __future__ import annotations

import functools
from typing import Sequence

from nertune.errors import NertuneError

CONFIG_FIELD = "nertune_casing"
SCHEMES = {"shape6": 6}  # scheme name -> number of classes (token type rows)
DEFAULT_SCHEME = "shape6"


@functools.lru_cache(maxsize=1 << 16)  # words repeat: most of a text's are among the last few thousand seen
def word_class(word: str) -> int:
    """The shape6 casing class of one word (see the module docstring)."""
    if any(c.isdigit() for c in word):
        return 5
    cased = [c for c in word if c.isupper() or c.islower()]
    if not cased:
        return 1 if any(c.isalpha() for c in word) else 0
    if not any(c.isupper() for c in cased):
        return 1
    if len(cased) >= 2 and all(c.isupper() for c in cased):
        return 3
    if any(c.isupper() for c in cased[1:]):
        return 4
    return 2


def piece_types(words: Sequence[str], word_starts: Sequence[int], n_pieces: int) -> list[int]:
    """Each wordpiece gets its word's class: the pieces of word i are word_starts[i] up to the next start."""
    types = [0] * n_pieces
    ends = [*word_starts[1:], n_pieces]
    for word, start, end in zip(words, word_starts, ends):
        types[start:end] = [word_class(word)] * (end - start)
    return types


def casing_scheme(config) -> str | None:
    """The casing scheme a model was trained with, from its config (None: no casing)."""
    scheme = getattr(config, CONFIG_FIELD, None) if config is not None else None
    if scheme is None:
        return None
    if scheme not in SCHEMES:
        raise NertuneError(
            f"config.json {CONFIG_FIELD} is {scheme!r}, which this nertune does not know",
            fix=f"use a model trained with one of: {', '.join(SCHEMES)} (or upgrade nertune)",
        )
    rows = getattr(config, "type_vocab_size", 0) or 0
    if rows < SCHEMES[scheme]:
        raise NertuneError(
            f"config.json has {CONFIG_FIELD} {scheme!r} but type_vocab_size {rows} < {SCHEMES[scheme]}",
            fix="re-save the model with nertune, or remove the field to tag without casing",
        )
    return scheme


def add_casing(model, scheme: str = DEFAULT_SCHEME) -> None:
    """Give `model` one token type row per casing class, each a copy of row 0.

    Every window so far used token type 0 only, so with all rows equal to row 0
    the model computes exactly what it did before (row 1, BERT's segment B, is
    overwritten too: casing ids take the place of segment ids).
    """
    import torch  # noqa: PLC0415  (CLI start-up: no torch)

    if casing_scheme(model.config) == scheme:
        return  # continuing from a model that already has the rows
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    old = getattr(embeddings, "token_type_embeddings", None)
    if not isinstance(old, torch.nn.Embedding):
        raise NertuneError(
            f"model type {getattr(model.config, 'model_type', '?')!r} has no token type embeddings to carry casing classes",
            fix="train it without casing (casing: false / --no-casing), or use a BERT-style encoder (bert, electra, roberta)",
        )
    rows = SCHEMES[scheme]
    new = torch.nn.Embedding(rows, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[0].expand(rows, -1))
    embeddings.token_type_embeddings = new
    model.config.type_vocab_size = rows
    setattr(model.config, CONFIG_FIELD, scheme)
