"""nertune: fine-tune BERT-family encoders for named entity recognition, and put them to work."""

from __future__ import annotations

import os

# oneDNN keeps 1,024 kernels by default; a run's many pass shapes need more, and a thrashing cache made each epoch
# slower than the last (BENCHMARKS.md, "Why the epochs slow down"). Read at oneDNN's first kernel; a user's value wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

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
