"""nertune: fine-tune BERT-family encoders for named entity recognition, and put them to work."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Tagger", "train", "__version__"]


def __getattr__(name: str):
    # Lazy: `import nertune` stays fast; torch loads when first needed.
    if name == "Tagger":
        from nertune.tag.tagger import Tagger  # noqa: PLC0415  (facade: lazy names)

        return Tagger
    if name == "train":
        from nertune.training.api import train  # noqa: PLC0415  (facade: lazy names)

        return train
    raise AttributeError(f"module 'nertune' has no attribute {name!r}")
