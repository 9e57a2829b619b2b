"""The last encoder layer at the scored positions only: the same scores, less arithmetic.

A window is scored at the first pieces of the words it owns: the classifier, the CRF and the loss read
nothing else, and after the last layer a position feeds only its own logits. So that layer's queries,
attention output, feed-forward and layer norms need to run at the scored positions alone; its keys and values
still come from every position. [CLS], [SEP], later pieces of a word and all document context are never
scored: most of what a context recipe carries (BENCHMARKS.md, "The last layer at the scored positions").

Contract:
- `only_scored(model, positions)` around a forward pass; `positions[row]` lists the positions of that row
  of the model's input whose logits will be read. The logits there are those of the whole layer (the same
  arithmetic on fewer rows); at every other position they are meaningless and must not be read. A pass
  where the scored positions are most of it (no context) runs the whole layer: too little to save.
- It applies to encoders whose last layer is BERT's or a transformers copy of it (BERT, RoBERTa, ELECTRA,
  XLM-R, CamemBERT, MiniLM: absolute positions, no cross-attention, no feed-forward chunking), by class and
  attributes on first use, with SDPA or eager attention. Any other model (MPNet's relative position bias,
  DistilBERT, the pre-norm RoBERTa) computes every position, as it does outside the context; so does a
  pass under CUDA graphs (training/speed/graphs.py never enters it).
- Nothing reaches the weights, the config or the state dict: the layer's `forward` is replaced in place by
  one that, outside `only_scored` (an ONNX export traces there), calls the layer's own.
- Training: the gradient is that of the full layer (unscored positions get none from the loss either way).
  Dropout in the last layer draws masks for the scored positions only, so a run whose passes use this
  follows another random stream than one without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import types
from typing import NamedTuple, Sequence

import numpy as np
import torch

from nertune.model.positions import MASKED_ATTENTION

# (the layer they are for, its positions): another model run inside the block computes every position
_SCORED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("nertune_scored_positions", default=None)
_INSTALLED = "_nertune_scored_rows"  # on the layer: True once its forward is replaced, False when not BERT's layout
# A pass whose scored positions are more of it than this runs the whole layer: the gathers cost about what
# they save there (BENCHMARKS.md, "The last layer at the scored positions").
WORTH_IT = 0.6
# BERT's layer and transformers' copies of it (the same post-norm layout, by "Copied from" in their sources).
LAYERS = frozenset({"BertLayer", "RobertaLayer", "XLMRobertaLayer", "CamembertLayer", "ElectraLayer", "ErnieLayer"})


class Scored(NamedTuple):
    """Scored positions: flat for the linear layers and for putting the results back, padded per row for the attention."""

    index: torch.Tensor  # [rows, most]: each row's scored positions, then its last one repeated (or 0)
    rows: torch.Tensor  # [scored]: the row of each scored position, row by row
    columns: torch.Tensor  # [scored]: the position
    slots: torch.Tensor  # [scored]: its place in its row of `index`


@contextlib.contextmanager
def only_scored(model, positions: Sequence[Sequence[int]]):
    """Within it, `model`'s last layer runs at `positions` only (see the module docstring). The index tensors
    are built in the layer, once it knows the pass is worth cutting, on the pass's device."""
    layer = _last_layer(getattr(model, "module", model))  # data parallelism wraps the model
    if layer is None or not _install(layer):
        yield
        return
    token = _SCORED.set((layer, positions))
    try:
        yield
    finally:
        _SCORED.reset(token)


def scored(positions: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Scored | None:
    """The `Scored` of per-row position lists (built on the host, sent without waiting); None when none is scored."""
    counts = np.fromiter((len(p) for p in positions), dtype=np.int64, count=len(positions))
    most = int(counts.max(initial=0))
    if most == 0:
        return None
    flat = np.fromiter((i for p in positions for i in p), dtype=np.int64, count=int(counts.sum()))
    real = np.arange(most)[None, :] < counts[:, None]
    # Padding repeats a row's last scored position: its output is computed and dropped, never written twice.
    last = np.zeros(len(positions), dtype=np.int64)
    has = counts > 0
    last[has] = flat[np.cumsum(counts)[has] - 1]
    index = np.repeat(last[:, None], most, axis=1)
    index[real] = flat
    rows = np.repeat(np.arange(len(positions)), counts)
    slots = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    return Scored(*(torch.from_numpy(a).to(device, non_blocking=True) for a in (index, rows, flat, slots)))


def packed_positions(first_pieces: Sequence[Sequence[int]], unpack: torch.Tensor, rows: int, width: int) -> list[list[int]]:
    """Per packed row (data/packing.py; `rows` x `width`), the positions of its windows' `first_pieces`: `unpack`
    maps each window's tokens to their flat indices in the rows."""
    owner = np.repeat(np.arange(len(first_pieces)), [len(p) for p in first_pieces])
    within = np.fromiter((i for p in first_pieces for i in p), dtype=np.int64, count=len(owner))
    flat = np.sort(unpack.numpy()[owner, within])
    cut = np.searchsorted(flat, np.arange(1, rows) * width)
    return [(part - row * width).tolist() for row, part in enumerate(np.split(flat, cut))]


def _last_layer(model):
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    return layers[-1] if layers is not None and len(layers) else None


def _install(layer) -> bool:
    state = getattr(layer, _INSTALLED, None)
    if state is None:
        state = _bert_layout(layer)
        if state:  # a bound method: a deep copy of the model rebinds it to the copied layer
            layer.forward = types.MethodType(_forward, layer)
        setattr(layer, _INSTALLED, state)
    return state


def _bert_layout(layer) -> bool:
    """BERT's post-norm layer itself, or one of its copies in transformers; the pre-norm variants
    (RoBERTa-PreLayerNorm, XLM-R XL) have the same attributes plus norms this module does not apply."""
    attention = getattr(layer, "attention", None)
    own = getattr(attention, "self", None)
    config = getattr(own, "config", None)
    return (
        type(layer).__name__ in LAYERS
        and type(layer).__module__.startswith("transformers.models.")
        and config is not None
        and all(isinstance(getattr(own, name, None), torch.nn.Linear) for name in ("query", "key", "value"))
        and all(hasattr(own, name) for name in ("num_attention_heads", "attention_head_size", "scaling", "dropout"))
        and all(hasattr(x, name) for x, name in ((attention, "output"), (layer, "intermediate"), (layer, "output")))
        and hasattr(sys.modules.get(type(own).__module__), "eager_attention_forward")
        and not getattr(layer, "is_decoder", False)
        and not getattr(layer, "add_cross_attention", False)
        and not getattr(layer, "chunk_size_feed_forward", 0)
        and getattr(config, "position_embedding_type", "absolute") in (None, "absolute")
    )


def _forward(layer, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
    """The layer's forward: at the scored positions when `only_scored` named this layer's and they are few enough."""
    named = _SCORED.get()
    positions = named[1] if named is not None and named[0] is layer else None
    count = sum(map(len, positions)) if positions is not None else 0
    whole = (
        not count
        or count > WORTH_IT * hidden_states.shape[:2].numel()
        or layer.attention.self.config._attn_implementation not in MASKED_ATTENTION  # flash and flex take other masks
        or (layer.training and getattr(layer, "gradient_checkpointing", False))  # the class's forward checkpoints
        or args
        or encoder_hidden_states is not None
        or kwargs.get("cache") is not None
        or kwargs.get("encoder_attention_mask") is not None
    )
    if whole:
        return type(layer).forward(layer, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    for unused in ("cache", "encoder_attention_mask"):  # None here (checked above): not the attention's
        kwargs.pop(unused, None)
    return _at_scored(layer, hidden_states, attention_mask, scored(positions, hidden_states.device), kwargs)


def _at_scored(layer, hidden: torch.Tensor, mask: torch.Tensor | None, positions: Scored, kwargs: dict) -> torch.Tensor:
    """BertLayer.forward with the queries and all that follows them at `positions` only: the linear layers on
    the scored rows themselves, the attention on them padded per row (it needs each row's keys)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: PLC0415  (no transformers at import)

    own = layer.attention.self
    rows, width, size = hidden.shape
    index, where, slots = positions.index, (positions.rows, positions.columns), (positions.rows, positions.slots)
    picked = hidden[where]  # [scored, hidden]
    queries = own.query(picked)
    query = queries.new_zeros(rows, index.shape[1], queries.shape[-1]).index_put(slots, queries)
    heads = (rows, -1, own.num_attention_heads, own.attention_head_size)
    query = query.view(heads).transpose(1, 2)
    key = own.key(hidden).view(heads).transpose(1, 2)
    value = own.value(hidden).view(heads).transpose(1, 2)
    if mask is not None and mask.dim() == 4 and mask.shape[-2] == width:  # a mask row per query (packed rows)
        mask = mask.gather(2, index[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[-1]))
    eager = sys.modules[type(own).__module__].eager_attention_forward
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(own.config._attn_implementation, eager)
    context, _ = attend(own, query, key, value, mask, dropout=own.dropout.p if own.training else 0.0, scaling=own.scaling, **kwargs)
    attended = layer.attention.output(context.reshape(rows, index.shape[1], -1)[slots], picked)
    out = layer.output(layer.intermediate(attended), attended)
    return hidden.to(out.dtype).index_put(where, out)
