"""SHRED (Hu et al. 2026, "Retain-Set-Free Unlearning via Self-Distillation with Logit
Demotion"): forget from the forget rows alone, no retain set.

Within a forget answer, the tokens the base model found least likely carry what it memorised
(names, dates, titles); the others are ordinary language. Per row, the `forget_share` of
answer tokens with the lowest base-model probability are forget positions, the rest anchors.
At a forget position the answer's token is demoted (probability 0) and, with `nucleus` > 0,
so is every token of the base model's top-`nucleus` mass (what a paraphrase would fall back
on); the target is the base model's distribution over the `top_k` likeliest tokens left,
renormalised. At an anchor it is the base distribution over its `top_k` tokens. The model is
read over the same tokens (the demoted ones included), so an untouched adapter sits at KL 0
on every anchor, and one KL(target || model) term forgets and keeps at once:

    q_t(v) = p_base(v | x_<t) * 1[v in K_t] / Z_t      D_t = {} at anchors
    K_t    = the top_k tokens of p_base outside D_t
    loss   = mean_t KL(q_t || p_model(. | x_<t) renormalised over K_t and D_t)

The paper's figure gives the targets and the loss; `top_k` and `nucleus` (0.9, its RWKU
setting as far as its published runs show) are this module's defaults, not its stated ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from guard_server.unlearn.base import UnlearnConfig, UnlearningMethod, register_method, require
from guard_server.unlearn.losses import label_logits

if TYPE_CHECKING:
    from torch import nn

    from guard_server.unlearn.base import Batch


@dataclass(frozen=True)
class ShredConfig(UnlearnConfig):
    """`forget_share`: the share of each answer's tokens demoted (the paper's P); `top_k`:
    the base model's tokens a target keeps; `nucleus`: the base model's probability mass
    demoted with the answer's token at a forget position (0: the answer's token alone)."""

    forget_share: float = 0.5
    top_k: int = 64
    nucleus: float = 0.9

    def validate(self) -> None:
        super().validate()
        share = self.forget_share
        require(0 < share <= 1, "forget_share", share, "a number in (0, 1]")
        require(self.top_k >= 2, "top_k", self.top_k, "an integer >= 2")
        require(0 <= self.nucleus < 1, "nucleus", self.nucleus, "a number in [0, 1)")


def forget_positions(label_logp: torch.Tensor, rows: torch.Tensor, share: float) -> torch.Tensor:
    """Per row, its `share` (rounded up) of label positions with the lowest log-probability.

    `label_logp` and `rows` are flat over a batch's label positions: each position's base
    log-probability of its label and the row it belongs to.
    """
    chosen = torch.zeros_like(rows, dtype=torch.bool)
    for row in rows.unique():
        where = (rows == row).nonzero().flatten()
        count = math.ceil(share * where.numel())
        chosen[where[label_logp[where].argsort()[:count]]] = True
    return chosen


def demoted_targets(
    base_logp: torch.Tensor,
    labels: torch.Tensor,
    chosen: torch.Tensor,
    top_k: int,
    nucleus: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The targets over each position's kept tokens: probabilities and token ids, both
    (positions, k), and the demoted tokens, (positions, vocabulary).

    At a chosen position the label's token and the tokens of the base model's top-`nucleus`
    mass (over the whole vocabulary) are demoted; the target is the base distribution over the
    `top_k` likeliest tokens left, renormalised. Rows sum to 1, or to 0 where nothing is left
    (a base model sure of the label alone: no target there).
    """
    probs = base_logp.exp()
    label = torch.zeros_like(probs, dtype=torch.bool)
    label[torch.arange(labels.numel()), labels] = True
    demoted = label & chosen[:, None]
    if nucleus > 0:
        ordered, order = probs.sort(-1, descending=True)
        in_nucleus = (ordered.cumsum(-1) - ordered < nucleus) & chosen[:, None]
        demoted |= torch.zeros_like(demoted).scatter(-1, order, in_nucleus)
    kept, index = probs.masked_fill(demoted, 0.0).topk(min(top_k, probs.shape[-1]), dim=-1)
    total = kept.sum(-1, keepdim=True)
    return torch.where(total > 0, kept / total.clamp_min(1e-30), 0.0), index, demoted


@register_method("shred", ShredConfig)
class Shred(UnlearningMethod):
    """KL(demoted base distribution || model) on the forget answers; the retain rows a batch
    carries are not read."""

    config: ShredConfig

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, tokens = self.config, batch.forget
        with torch.no_grad(), model.disable_adapter():
            base = F.log_softmax(label_logits(model, tokens)[0], -1)
        logits, mask = label_logits(model, tokens)
        labels = tokens.labels[:, 1:][mask]
        label_logp = base.gather(-1, labels[:, None]).squeeze(-1)
        chosen = forget_positions(label_logp, mask.nonzero()[:, 0], cfg.forget_share)
        target, index, demoted = demoted_targets(base, labels, chosen, cfg.top_k, cfg.nucleus)
        read = demoted.scatter(-1, index, True)  # the tokens the model is read over
        current = F.log_softmax(logits.masked_fill(~read, -torch.inf), -1)
        terms = target * (target.clamp_min(1e-30).log() - current.gather(-1, index))
        kl = terms.sum(-1)
        has_target = target.sum(-1) > 0
        loss = kl[has_target].mean() if bool(has_target.any()) else kl.sum() * 0.0
        label_prob = F.softmax(logits.detach(), -1).gather(-1, labels[:, None]).squeeze(-1)
        logs = {
            "forget_kl": (kl, chosen & has_target),
            "anchor_kl": (kl, ~chosen),  # none when forget_share is 1
            "forget_label_prob": (label_prob, chosen),
        }
        return loss, {k: float(v.detach()[w].mean()) for k, (v, w) in logs.items() if w.any()}
