"""What a prompt asks, read from the token ids the engine will run (not from the route's body)."""

from __future__ import annotations

import re
from typing import Any

# A chat template puts each turn between special tokens, its role first ("<|im_start|>user\n",
# "<|start_header_id|>user<|end_header_id|>"): a segment that starts after a special token
# loses that role line; one that is only a role word is dropped.
_ROLE = r"(?:system|user|assistant|developer|tool|ipython|human|model|function)"
_ROLE_LINE = re.compile(rf"^\s*{_ROLE}\s*(?:\n|$)", re.I)
_SENTINEL = "zqxj sentinel question zqxj"


class PromptReader:
    """Turns a prompt's token ids into the texts detection screens, one per templated turn.

    The chat template's own fixed text (a default system prompt it adds to every chat) is
    learnt once from the template and left out: it is the same in every request and would
    only blur the turns that a client wrote.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.special = frozenset(getattr(tokenizer, "all_special_ids", ()) or ())
        self.boilerplate = self._boilerplate()

    def texts(self, token_ids: list[int]) -> list[str]:
        segments: list[list[int]] = [[]]
        after_special = [False]
        for token in token_ids:
            if token in self.special:
                segments.append([])
                after_special.append(True)
            else:
                segments[-1].append(token)
        texts = []
        for ids, templated in zip(segments, after_special, strict=True):
            text = self.tokenizer.decode(ids) if ids else ""
            if templated:
                text = _ROLE_LINE.sub("", text, count=1)
            text = text.strip()
            if text and text not in self.boilerplate:
                texts.append(text)
        return texts

    def _boilerplate(self) -> frozenset[str]:
        if getattr(self.tokenizer, "chat_template", None) is None:
            return frozenset()
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        self.boilerplate = frozenset()
        return frozenset(t for t in self.texts(ids) if _SENTINEL not in t)
