"""Token and sequence log-likelihoods the methods share (labels of -100 are ignored)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Tokens

IGNORE = -100


def label_logits(model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 logits that predict each label token, (labels, vocab), and the label mask,
    (rows, length - 1).

    The output layer runs only at the positions where some row has a label (the model's own
    head, through `logits_to_keep`, so a model that scales or caps its logits still does).
    Run at every position it would hold rows x length x vocabulary logits (49k words for the
    default model) and their gradients, for answers a few tokens long.
    """
    mask = tokens.labels[:, 1:] != IGNORE
    keep = mask.any(0).nonzero().flatten()
    logits = model(
        input_ids=tokens.input_ids,
        attention_mask=tokens.attention_mask,
        logits_to_keep=keep,
        use_cache=False,
    ).logits
    return logits[mask[:, keep]].float(), mask


def token_logprobs(model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every label token and the label mask, both (rows, length - 1).

    Masked positions hold 0, so sums over the last axis are per-sequence log-probabilities.
    """
    logits, mask = label_logits(model, tokens)
    nll = F.cross_entropy(logits, tokens.labels[:, 1:][mask], reduction="none")
    return nll.new_zeros(mask.shape).masked_scatter(mask, -nll), mask


def sequence_logprob(model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probability per row and the number of answer tokens per row."""
    logp, mask = token_logprobs(model, tokens)
    return logp.sum(-1), mask.sum(-1)


def reference_logprob(model: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_logprob` under the frozen base model: the PEFT adapter off, no second copy."""
    with torch.no_grad(), model.disable_adapter():
        return sequence_logprob(model, tokens)


def mean_nll(logp: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Token-averaged negative log-likelihood over a whole batch of per-row sums."""
    return -logp.sum() / counts.sum().clamp_min(1)


def nll(model: nn.Module, tokens: Tokens) -> torch.Tensor:
    """The usual language-model loss: NLL averaged over every answer token in the batch."""
    return mean_nll(*sequence_logprob(model, tokens))


def mean_token_prob(model: nn.Module, tokens: Tokens) -> torch.Tensor:
    """Per row, the mean probability of the answer tokens (in [0, 1], unlike a product)."""
    logp, mask = token_logprobs(model, tokens)
    return (logp.exp() * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def reference_kl(model: nn.Module, tokens: Tokens) -> torch.Tensor:
    """KL(base || model) of the next-token distributions at every label position, averaged
    over positions: keeps the base model's whole distribution on the rows, not one sampled
    continuation of them, and is 0 exactly when the adapter changes nothing there."""
    with torch.no_grad(), model.disable_adapter():
        reference = F.log_softmax(label_logits(model, tokens)[0], -1)
    current = F.log_softmax(label_logits(model, tokens)[0], -1)
    return F.kl_div(current, reference, log_target=True, reduction="batchmean")
