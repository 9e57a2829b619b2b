"""The optional CRF head: learned scores for each label following another, on top of the word logits.

The classifier still gives one score vector per word (the CRF's emissions); the CRF (torchcrf.CRF) adds
a score for each pair of neighbouring labels and for the first and last label. Training maximises the
likelihood of a window's whole gold tag sequence (model/loss.py); decoding finds the best sequence under
emissions + those scores (model/decode.py, the IOB2 constraint on top), the same way everywhere.

On disk the CRF is `crf.safetensors` next to model.safetensors, which keeps the plain Hugging Face keys
(any token-classification loader reads it without surprises); config.json records `nertune_crf: true`,
so a directory that says CRF but lacks the file is an error, never a silent softmax model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torchcrf import CRF

from nertune.errors import NertuneError

CONFIG_FIELD = "nertune_crf"
CRF_FILE = "crf.safetensors"

CrfScores = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (start [C], end [C], transitions [C_prev, C_next])


def has_crf(config) -> bool:
    return bool(getattr(config, CONFIG_FIELD, False))


def add_crf(model) -> None:
    """A fresh CRF over the model's labels, as `model.crf` (a submodule: it moves, trains and checkpoints with the model)."""
    model.crf = CRF(model.config.num_labels, batch_first=True)
    setattr(model.config, CONFIG_FIELD, True)


def crf_head(model):
    """The model's CRF (model.crf), under a data-parallel wrapper too; None for a softmax model."""
    return getattr(getattr(model, "module", model), "crf", None)


def crf_scores(model) -> CrfScores | None:
    """The CRF's scores as CPU float tensors, for decoding; None for a softmax model."""
    crf = getattr(model, "crf", None)
    if crf is None:
        return None
    return tuple(t.detach().float().cpu() for t in (crf.start_transitions, crf.end_transitions, crf.transitions))


def save_crf(crf, directory: Path) -> None:
    # Keys: start_transitions, end_transitions, transitions.
    save_file({name: t.detach().cpu().contiguous() for name, t in crf.state_dict().items()}, str(Path(directory) / CRF_FILE))


def load_crf(model, directory: str | Path) -> None:
    """Attach the CRF saved in `directory` when the model's config.json says it has one (else nothing)."""
    if not has_crf(model.config):
        return
    path = Path(directory) / CRF_FILE
    if not path.is_file():
        raise NertuneError(
            f"config.json says the model has a CRF head but {CRF_FILE} is missing",
            path=str(directory),
            fix=f"copy the whole model directory again ({CRF_FILE} sits next to config.json), or re-train",
        )
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:
        raise NertuneError(
            f"{CRF_FILE} is unreadable ({str(error).splitlines()[0]})", path=str(path), fix="copy the model directory again or re-train"
        ) from None
    if getattr(model, "crf", None) is None:
        add_crf(model)
    try:
        model.crf.load_state_dict(tensors)
    except RuntimeError:  # other keys or shapes: not this model's CRF
        raise NertuneError(
            f"{CRF_FILE} does not fit the model's {model.config.num_labels} labels",
            path=str(path),
            fix="copy the whole model directory again, or re-train",
        ) from None


def log_marginals(crf, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log P(label c at word t | the sentence) under the CRF, by the forward-backward algorithm: [B, T, C].

    `emissions` [B, T, C] and `mask` [B, T] (bool) are batch-first with each row's words packed to the
    left, as the CRF's loss takes them; positions past a row's words hold garbage. Differentiable, so a
    student can be trained on a teacher's marginals (training/distill.py)."""
    transitions = crf.transitions.float()
    steps = emissions.shape[1]
    alphas = [crf.start_transitions.float() + emissions[:, 0]]
    for t in range(1, steps):
        step = torch.logsumexp(alphas[-1][:, :, None] + transitions[None], dim=1) + emissions[:, t]
        alphas.append(torch.where(mask[:, t, None], step, alphas[-1]))
    end = crf.end_transitions.float().expand(emissions.shape[0], -1)
    betas = [end]
    for t in range(steps - 2, -1, -1):
        step = torch.logsumexp(transitions[None] + (emissions[:, t + 1] + betas[-1])[:, None, :], dim=2)
        betas.append(torch.where(mask[:, t + 1, None], step, end))  # the row's last word: only the end score follows
    alpha, beta = torch.stack(alphas, 1), torch.stack(betas[::-1], 1)
    log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # alphas stop moving past a row's last word
    return alpha + beta - log_z[:, None, None]


# log_likelihood's first tree level holds [rows, words/2, labels, labels, labels] numbers (and the backward keeps each
# level): CoNLL's 9 labels take 1.5 MB a step; a label set of a hundred would take gigabytes. Past this, stay eager.
TREE_LIMIT = 2**26


def fits_tree(rows: int, words: int, labels: int) -> bool:
    """Whether `log_likelihood` over [rows, words] with `labels` labels stays within TREE_LIMIT numbers a level."""
    return rows * max(1, words // 2) * labels**3 <= TREE_LIMIT


# Stands for log 0 where a product needs an identity matrix: finite, so no logsumexp over only "-inf" turns a
# gradient into NaN, and far enough below any path's score that exp() of the difference is exactly 0 in float32.
NO_PATH = -1.0e9


def log_likelihood(crf, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The CRF's log-likelihood of each row's `tags`, [B]: torchcrf's `crf(emissions, tags, mask, reduction="none")`
    to float rounding, with no loop over the words and no value read back to the host, so a CUDA graph can hold it
    (training/speed/graphed_step.py). The partition function is a tree of log-space matrix products, log2(T)
    batched steps instead of T sequential ones.

    `emissions` [B, T, C], `tags` [B, T] and `mask` [B, T] (bool), each row's words packed to the left. A row with
    no word (mask all False) gets a finite number: weight it 0."""
    start, end, transitions = (t.float() for t in (crf.start_transitions, crf.end_transitions, crf.transitions))
    emissions = emissions.float()
    rows, steps, labels = emissions.shape
    on = mask[:, 1:].float()
    gold = start[tags[:, 0]] + emissions[:, 0].gather(1, tags[:, :1]).squeeze(1)
    moves = transitions[tags[:, :-1], tags[:, 1:]] + emissions[:, 1:].gather(2, tags[:, 1:, None]).squeeze(2)
    last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
    gold = gold + (moves * on).sum(1) + end[last]

    # M_t[i, j] = transitions[i, j] + emissions[t, j] for each word after the first; the identity past a row's words.
    identity = torch.full((labels, labels), NO_PATH, device=emissions.device).fill_diagonal_(0.0)
    products = torch.where(mask[:, 1:, None, None], transitions + emissions[:, 1:, None, :], identity)
    width = 1 << max(0, steps - 2).bit_length()  # the products, padded with identities to a power of two
    products = torch.cat([products, identity.expand(rows, width - (steps - 1), labels, labels)], dim=1)
    while products.shape[1] > 1:
        products = torch.logsumexp(products[:, 0::2, :, :, None] + products[:, 1::2, None, :, :], dim=3)
    paths = (start + emissions[:, 0])[:, :, None] + products[:, 0] + end[None, None, :]
    return gold - torch.logsumexp(paths.flatten(1), dim=1)
