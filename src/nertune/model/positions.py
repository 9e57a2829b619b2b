"""What a model's config says about positions: where its position ids start and how many pieces fit.

The one place that knows which model types count positions from 0 (BERT-like) and which from the
padding index + 1 (RoBERTa-like): windows, packing and export all ask here.
"""

from __future__ import annotations

ZERO_BASED = frozenset({"bert", "electra", "ernie", "megatron-bert", "rembert"})
PAD_BASED = frozenset({"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "roberta-prelayernorm", "mpnet"})
# The attention implementations that take packing's ready-made 4D mask; training/speed/dropout.py
# registers the third under this name.
CHEAP_DROPOUT_ATTENTION = "nertune_cheap_dropout"
MASKED_ATTENTION = ("sdpa", "eager", CHEAP_DROPOUT_ATTENTION)


def first_position(config) -> int | None:
    """The position id of a window's first token, or None where it is not known."""
    model_type = getattr(config, "model_type", "")
    if model_type in ZERO_BASED:
        return 0
    if model_type in PAD_BASED and getattr(config, "pad_token_id", None) is not None:
        return config.pad_token_id + 1
    return None


def packing_offset(model) -> int | None:
    """The position id of a window's first token, or None where packing is not known to be exact."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None  # relative positions: nothing to restart
    if getattr(config, "_attn_implementation", "sdpa") not in MASKED_ATTENTION:
        return None  # flash / flex kernels take other mask formats
    return first_position(config)


def max_pieces_for(model, tokenizer) -> int:
    """Wordpieces that fit in one window, leaving room for [CLS] and [SEP]."""
    limit = getattr(model.config, "max_position_embeddings", 512) or 512
    if getattr(model.config, "model_type", "") in PAD_BASED:
        limit -= 2  # position ids start after the padding index
    tokenizer_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return max(8, min(limit, tokenizer_limit) - 2)
