"""Dropout with a cheaper random mask for CPU training: the same dropout, a fifth of the mask's cost.

torch's CPU dropout draws its mask with `bernoulli_`, a double per element from one sequential
generator, a noticeable share of a CPU step (BENCHMARKS.md, "Measurements behind the code"). Here every element takes
16 random bits (four per random int64) and is kept when they reach round(p * 65536): p to within
1/65536 (0.1 -> 0.100006), each kept value scaled by the exact 1 / (1 - p').

`use_cheap_dropout(model)` swaps every `nn.Dropout` of the model for `CheapDropout`, and the attention
for `cheap_dropout_attention` (a registered transformers attention function: the probabilities'
dropout happens inside attention, where no module can reach it). Eval mode, p = 0 and GPUs (whose fused
dropout is cheap) all take torch's own path; nothing of this reaches the saved config or weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nertune.model.positions import CHEAP_DROPOUT_ATTENTION as ATTENTION


def cheap_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with the 16-bit mask on a CPU."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    dropped = round(p * 65536)
    if dropped >= 65536:
        return x * 0.0
    n = x.numel()
    # random_(from, to) over the whole int64 range: all four 16-bit lanes of each draw are uniform.
    bits = torch.empty(-(-n // 4), dtype=torch.int64).random_(-(2**63), 2**63 - 1).view(torch.int16)[:n].view(x.shape)
    keep = (bits >= dropped - 32768).to(x.dtype).mul_(65536 / (65536 - dropped))
    return x * keep


class CheapDropout(nn.Dropout):
    """nn.Dropout (same `p`, same place in the model) drawing its mask as `cheap_dropout` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cheap_dropout(x, self.p, self.training)


def cheap_dropout_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention function: SDPA, except when training on a CPU with dropout, where the
    math is spelled out (as SDPA's own CPU fallback does it) so the probabilities' mask is the cheap one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: PLC0415  (no transformers at import)

    if dropout == 0.0 or query.device.type != "cpu" or key.shape[1] != query.shape[1]:  # (the last: grouped-query heads)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True: may attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probabilities = cheap_dropout(F.softmax(scores, dim=-1), dropout)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface  # noqa: PLC0415  (no transformers at import)
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask  # noqa: PLC0415  (no transformers at import)

    AttentionInterface.register(ATTENTION, cheap_dropout_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the boolean masks SDPA takes, for 2D attention masks


def use_cheap_dropout(model) -> bool:
    """Swap the model's dropouts for the cheap-mask ones (for CPU training); True when anything changed."""
    changed = False
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, CheapDropout(child.p, child.inplace).train(child.training))
                changed = True
    config = getattr(model, "config", None)
    # Only models whose attention goes through transformers' AttentionInterface can take another function.
    if getattr(type(model), "_supports_attention_backend", False) and getattr(config, "_attn_implementation", None) in ("sdpa", "eager"):
        _register()
        model.set_attn_implementation(ATTENTION)
        changed = True
    return changed
