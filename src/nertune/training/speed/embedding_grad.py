"""Keep the word-embedding gradient in one buffer on CPU, instead of a fresh table-sized tensor a step.

The dense backward of an embedding allocates and zero-fills a gradient the size of the whole table
every step. Past glibc's mmap threshold that is fresh pages, and page faults, which cost several
times what zeroing a buffer that stays mapped does (BENCHMARKS.md, "Measurements behind the code").
With `sparse=True` the embedding's backward yields only the rows the step used,
and autograd adds them into the dense buffer kept as `.grad`; clipping and the fused AdamW see the
same dense gradient as before. GPUs have a caching allocator, and data parallelism wants dense
gradients, so this is for single-process CPU training only.
"""

from __future__ import annotations

import torch


class KeptEmbeddingGradient:
    def __init__(self, model: torch.nn.Module):
        self.embedding = model.get_input_embeddings()
        self.embedding.sparse = True  # a module attribute, not saved with the model
        self.buffer = torch.zeros_like(self.embedding.weight)
        self.embedding.weight.grad = self.buffer  # dense from the start: sparse rows are added into it

    def reset(self) -> None:
        """After `optimizer.zero_grad(set_to_none=True)`: the same buffer, zeroed, for the next step."""
        self.embedding.weight.grad = self.buffer.zero_()

    def close(self) -> None:
        self.embedding.sparse = False
        self.embedding.weight.grad = None
