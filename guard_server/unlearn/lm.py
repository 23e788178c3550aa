"""A causal LM scored in process (Hugging Face, CPU, float32), batched: greedy answers through
the chat template, per-token log-probabilities of texts, the answer letter's logit after a
multiple-choice prompt. Early stopping (`monitor`) reads adapters through it during training,
and `guard-bench` scores them with it (`bench/lm_eval.py` adds RWKU's measures).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

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
