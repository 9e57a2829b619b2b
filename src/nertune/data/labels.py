"""Labels your way: rename, merge or drop entity types (`--label-map`), for training and evaluation alike.

A map is JSON text or a JSON / YAML file: {"PERSON": "PER", "MISC": null} renames PERSON to PER and
drops MISC (its words become O). Types the map does not name are kept as they are.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from nertune.data.conll import ConllFile
from nertune.errors import NertuneError

MAX_MAP_BYTES = 1 << 20


def parse_label_map(value: str | dict | None) -> dict[str, str | None] | None:
    """The map from `--label-map` (JSON text or a file) or a recipe's mapping; None: no map."""
    if value is None or isinstance(value, dict):
        mapping, source = value, None
    else:
        text, source = value, None
        if not value.lstrip().startswith("{"):
            path = Path(value)
            if not path.is_file():
                raise NertuneError(f"label map {value!r} is neither JSON nor a file", fix='give {"OLD": "NEW", "DROP": null} or a file')
            if path.stat().st_size > MAX_MAP_BYTES:
                raise NertuneError("label map file too large", path=value, fix="a label map is a few lines")
            text, source = path.read_text(encoding="utf-8"), value
        try:
            if source and source.endswith((".yaml", ".yml")):
                import yaml  # noqa: PLC0415  (YAML maps only)

                mapping = yaml.safe_load(text)
            else:
                mapping = json.loads(text)
        except (json.JSONDecodeError, ValueError, _yaml_error()) as error:
            raise NertuneError(
                f"label map is not valid JSON/YAML ({error})", path=source, fix='write {"OLD": "NEW", "DROP": null}'
            ) from None
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and k and (v is None or (isinstance(v, str) and v and " " not in v)) for k, v in mapping.items()
    ):
        raise NertuneError(
            "label map must map type names to type names or null",
            path=source if not isinstance(value, dict) else None,
            fix='write {"PERSON": "PER", "MISC": null} (types without B-/I-)',
        )
    bad = [k for k in [*mapping, *(v for v in mapping.values() if v)] if k[:2] in ("B-", "I-", "E-", "S-")]
    if bad:
        raise NertuneError(f"label map names tags, not types: {bad[0]!r}", fix="map entity types (PER), not tags (B-PER)")
    return mapping


def apply_label_map(data: ConllFile, mapping: dict[str, str | None] | None) -> Counter:
    """Rename / drop the types of `data`'s IOB2 tags in place; returns the entities dropped per type."""
    dropped: Counter = Counter()
    if not mapping:
        return dropped
    for sentence in data.sentences:
        tags = []
        for tag in sentence.tags:
            if tag == "O":
                tags.append(tag)
                continue
            prefix, kind = tag[:2], tag[2:]
            new = mapping.get(kind, kind)
            if new is None:
                dropped[kind] += prefix == "B-"
                tags.append("O")
            else:
                tags.append(prefix + new)
        sentence.tags = tags
    return dropped


def _yaml_error() -> type[Exception]:
    import yaml  # noqa: PLC0415  (YAML maps only)

    return yaml.YAMLError
