"""Train only the word-embedding rows the training data uses: the same updates, less optimizer work.

CoNLL-2003 train uses 14,095 of the uncased MiniLM's 30,522 wordpieces. Adam never moves a row whose
gradient has always been zero (its moments are zero, so its update is 0 / (0 + eps) = 0), and with no
weight decay nothing else does either. So the rows a run never sees stay as loaded, and leaving them out
of the optimizer changes no weight. On 2 CPU cores that is 6.3M of MiniLM's 22.7M parameters the fused
AdamW, gradient clipping and the gradient buffer no longer touch each step.

`UsedRowsEmbedding` stands in for the model's word embedding while it trains. Its parameter holds the
used rows; any other id (validation text, say) reads the loaded table, exactly as the full embedding
would. `state_dict()` and `load_state_dict()` speak the full table, so checkpoints and saved models are
the ordinary ones.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class UsedRowsEmbedding(nn.Embedding):
    def __init__(self, full: nn.Embedding, used_ids: Iterable[int]):
        table = full.weight.detach()
        used = torch.tensor(sorted(set(used_ids)), dtype=torch.long, device=table.device)
        padding = None
        if full.padding_idx is not None:  # the pad row takes no gradient, as in the full embedding
            used = torch.unique(torch.cat([used, used.new_tensor([full.padding_idx])]))
            padding = int((used == full.padding_idx).nonzero())
        super().__init__(
            len(used),
            full.embedding_dim,
            padding_idx=padding,
            sparse=full.sparse,
            _weight=table[used].clone(),
            device=table.device,
            dtype=table.dtype,
        )
        compact_of = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=table.device)
        compact_of[used] = torch.arange(len(used), device=table.device)
        # Plain tensors, not buffers: data parallelism broadcasts every buffer at every forward pass.
        self.loaded = table  # rows never trained keep these values
        self.used_ids = used
        self.compact_of = compact_of

    def _apply(self, fn, recurse=True):  # .to(device) / .half() reach the plain tensors too
        super()._apply(fn, recurse)
        self.loaded, self.used_ids, self.compact_of = fn(self.loaded), fn(self.used_ids), fn(self.compact_of)
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        compact = self.compact_of[input_ids]
        trained = F.embedding(compact.clamp(min=0), self.weight, self.padding_idx, sparse=self.sparse)
        # No host sync to ask whether every id is a used one: both lookups are a few KB, `where` picks.
        return torch.where((compact >= 0).unsqueeze(-1), trained, F.embedding(input_ids, self.loaded))

    def full_table(self) -> torch.Tensor:
        return self.loaded.index_copy(0, self.used_ids, self.weight.detach())

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.full_table()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        table = state_dict[key]
        if table.shape != self.loaded.shape:
            error_msgs.append(f"size mismatch for {key}: checkpoint {tuple(table.shape)}, model {tuple(self.loaded.shape)}")
            return
        with torch.no_grad():
            self.loaded.copy_(table)
            self.weight.copy_(self.loaded[self.used_ids])


def train_used_rows_only(model, used_ids: Iterable[int], weight_decay: float) -> bool:
    """Swap the model's word embedding for a `UsedRowsEmbedding`, before the optimizer is built.
    Only where it changes no update: no weight decay (it would shrink unseen rows), a plain
    `nn.Embedding` (no scaled or tied variants)."""
    embedding = model.get_input_embeddings()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if weight_decay != 0.0 or type(embedding) is not nn.Embedding or embedding.max_norm is not None or output is not None:
        return False
    model.set_input_embeddings(UsedRowsEmbedding(embedding, used_ids))
    return True
