"""Score a causal LM in process (Hugging Face, CPU, float32): what RWKU measures of a weight edit.

Greedy answers through the chat template (the served model is a chat model), 5-shot MMLU by
the answer letter's logit (as lm-evaluation-harness does), fluency as RWKU measures it (n-gram
entropy of answers to open instructions), per-token losses for held-out texts and for
membership inference (loss and min-k% prob, AUC).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LETTERS = ("A", "B", "C", "D")


# The most tokens, padding included, one batch's prompts may fill. Sorted by length, 50 of
# RWKU's fluency instructions (37-226 tokens) in one batch padded 3,358 tokens to 11,300;
# capped at 4,096 they answered (64 tokens) in 46 s instead of 88 s on a 2-core x86 VM.
BATCH_TOKENS = 4096


class LM:
    """A model and its tokenizer, batched left-padded for generation."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch: int = 32):
        self.model, self.tokenizer, self.batch = model.eval(), tokenizer, batch
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def chat(self, text: str) -> str:
        turn = [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)

    def _batches(self, texts: list[str], size: int, max_length: int | None = None):
        """Index batches, longest first, so each batch pads to similar lengths: at most `size`
        rows, and at most `BATCH_TOKENS` tokens once padded to the batch's longest (each text
        counted as truncated to `max_length`, where it will be)."""
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        if max_length is not None:
            lengths = [min(n, max_length) for n in lengths]
        return token_batches(lengths, size, BATCH_TOKENS)

    @torch.no_grad()
    def answers(
        self, prompts: list[str], max_new_tokens: int = 30, prefixes: list[str] | None = None
    ) -> list[str]:
        """Greedy answers to `prompts`, each one user turn; the assistant's turn begins with
        the prompt's prefix, where given (RWKU's "Answer:")."""
        out = [""] * len(prompts)
        prefixes = prefixes or [""] * len(prompts)
        texts = [self.chat(p) + pre for p, pre in zip(prompts, prefixes, strict=True)]
        for idx in self._batches(texts, self.batch):
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True)
            ids = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new, strict=True):
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True)
        return out

    def choices(self, prompts: list[tuple[str, str]]) -> list[int]:
        """The letter (index into A-D) with the highest next-token logit after each prompt."""
        return [int(logits.argmax()) for logits in self.letter_logits(prompts)]

    @torch.no_grad()
    def letter_logits(self, prompts: list[tuple[str, str]], size: int = 8) -> list[torch.Tensor]:
        """The next-token logits of " A" to " D" after each prompt.

        Prompts are (shared prefix, rest) pairs: 5-shot MMLU repeats each subject's five
        examples for every question, so a prefix is run once and its KV cache reused by
        batches of `size` questions, right-padded (a real token never attends to padding
        after it). Batches of 8 took 27% less time than one question at a time here.
        """
        letters = [self._id(f" {c}") for c in LETTERS]
        groups: dict[str, list[int]] = {}
        for i, (prefix, _) in enumerate(prompts):
            groups.setdefault(prefix, []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(prompts)
        for prefix, idx in groups.items():
            ids = [self.tokenizer(prefix + prompts[i][1])["input_ids"] for i in idx]
            # The tokens all of the group's prompts start with, whatever the seam does,
            # less one so every prompt has a token of its own to run.
            shared = min(len(x) for x in ids) - 1
            while shared > 0 and any(x[:shared] != ids[0][:shared] for x in ids):
                shared -= 1
            cache = None
            if shared:
                head = torch.tensor([ids[0][:shared]])
                cache = self.model(input_ids=head, use_cache=True, logits_to_keep=1).past_key_values
            order = sorted(range(len(idx)), key=lambda j: len(ids[j]))
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                for j, logits in zip(
                    chunk,
                    self._last_logits(cache, shared, [ids[j][shared:] for j in chunk]),
                    strict=True,
                ):
                    out[idx[j]] = logits[letters]
        return out

    def _last_logits(self, cache, shared: int, rows: list[list[int]]) -> torch.Tensor:
        """The next-token logits after each row, the rows run together after `cache`'s
        `shared` tokens."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        mask = torch.zeros(len(rows), shared + width, dtype=torch.long)
        mask[:, :shared] = 1
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, shared : shared + len(row)] = 1
        past = copy.deepcopy(cache)
        if past is not None:
            past.batch_repeat_interleave(len(rows))
        hidden = self.model.get_decoder()(
            input_ids=ids, attention_mask=mask, past_key_values=past, use_cache=True
        ).last_hidden_state
        last = hidden[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
        return self.model.get_output_embeddings()(last)

    def _id(self, text: str) -> int:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][-1]

    @torch.no_grad()
    def token_logprobs(self, texts: list[str], max_length: int = 256) -> list[np.ndarray]:
        """Each text's per-token log-probabilities (its first token excluded), right-padded."""
        self.tokenizer.padding_side = "right"
        try:
            out: list[np.ndarray] = [np.empty(0)] * len(texts)
            for idx in self._batches(texts, max(1, self.batch // 4), max_length):
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                )
                logits = self.model(**enc).logits[:, :-1].float()
                target = enc["input_ids"][:, 1:]
                logp = torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]
                for row, i in enumerate(idx):
                    n = int(enc["attention_mask"][row].sum()) - 1
                    out[i] = logp[row, :n].numpy()
            return out
        finally:
            self.tokenizer.padding_side = "left"


def token_batches(lengths: list[int], size: int, tokens: int) -> list[list[int]]:
    """Row indices grouped longest first: a row opens a new batch when the open one holds
    `size` rows, or padding every row to its longest would exceed `tokens`."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        open_ = batches[-1] if batches else None
        if open_ and len(open_) < size and (len(open_) + 1) * lengths[open_[0]] <= tokens:
            open_.append(i)
        else:
            batches.append([i])
    return batches


def mean_loss(logprobs: list[np.ndarray]) -> float:
    """Mean negative log-likelihood per token over all texts together."""
    total = sum(float(-lp.sum()) for lp in logprobs)
    return total / max(1, sum(len(lp) for lp in logprobs))


def min_k_score(logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-k% prob (Shi et al. 2024): minus the mean of the lowest k share of token log-probs;
    higher means less likely seen in training."""
    if not len(logprobs):
        return 0.0
    count = max(1, math.ceil(k * len(logprobs)))
    return float(-np.sort(logprobs)[:count].mean())


def auc(positive: list[float], negative: list[float]) -> float:
    """ROC AUC: the chance that a positive scores above a negative (ties count half)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def auc_interval(
    positive: list[float], negative: list[float], level: float = 0.95, resamples: int = 2000
) -> list[float]:
    """A percentile bootstrap interval for `auc` (scipy's, the two sides resampled apart,
    a fixed seed: a rerun on the same scores gives the same interval)."""
    from scipy.stats import bootstrap, mannwhitneyu

    def statistic(pos, neg, axis):  # Mann-Whitney U over its maximum is the ROC AUC
        return mannwhitneyu(pos, neg, axis=axis).statistic / (pos.shape[axis] * neg.shape[axis])

    result = bootstrap(
        (np.asarray(positive, float), np.asarray(negative, float)),
        statistic,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def mia(lm: LM, forget: list[str], retain: list[str]) -> dict[str, Any]:
    """How well a text's loss tells the forget texts from the retain texts (0.5: not at all).

    Positives are the forget texts: an AUC above 0.5 means they now look unseen; an edit that
    leaves them far more surprising than comparable text is itself detectable.
    """
    f, r = lm.token_logprobs(forget), lm.token_logprobs(retain)
    losses_f = [float(-lp.mean()) for lp in f]
    losses_r = [float(-lp.mean()) for lp in r]
    return {
        "mia_auc_loss": auc(losses_f, losses_r),
        "mia_auc_loss_ci": auc_interval(losses_f, losses_r),
        "mia_auc_mink": auc([min_k_score(lp) for lp in f], [min_k_score(lp) for lp in r]),
        "forget_mia_loss": float(np.mean(losses_f)),
        "retain_mia_loss": float(np.mean(losses_r)),
        "mia_texts": [len(forget), len(retain)],
    }


def ngram_entropy(text: str, ns: tuple[int, ...] = (2, 3), weights=(2 / 3, 4 / 3)) -> float:
    """ROME's and RWKU's fluency measure: weighted entropy (bits) of a text's word n-grams;
    repetitive or degenerate text scores low."""
    words = text.split()
    values = []
    for n in ns:
        grams = Counter(tuple(words[i : i + n]) for i in range(max(0, len(words) - n + 1)))
        total = sum(grams.values())
        freqs = np.asarray(list(grams.values()), dtype=float) / total if total else np.zeros(0)
        values.append(float(-(freqs * np.log2(freqs)).sum()) if total else 0.0)
    return float(np.average(values, weights=weights))
