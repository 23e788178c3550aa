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
TINY_TURN_WORDS = 2
TINY_TURNS = 3


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
        """The turns of a prompt, oldest first.

        A piece after a special token starts a turn only if it starts with a role line; any
        other piece belongs to the turn before it, so special tokens sprinkled between the
        words of a question do not cut it into harmless fragments. Where a prompt still
        falls into several tiny turns, their whole text is screened once more as one.
        """
        turns: list[str] = []
        for i, (start, end) in enumerate(self._pieces(token_ids)):
            text = self.tokenizer.decode(token_ids[start:end]) if end > start else ""
            if i == 0:
                turns.append(text)
            elif _ROLE_LINE.match(text):
                turns.append(_ROLE_LINE.sub("", text, count=1))
            else:
                turns[-1] += " " + text
        turns = [t.strip() for t in turns]
        turns = [t for t in turns if t and t not in self.boilerplate]
        if sum(len(t.split()) <= TINY_TURN_WORDS for t in turns) > TINY_TURNS:
            turns.append(" ".join(turns))
        return turns

    def asking_only(self, token_ids: list[int], clauses: tuple[str, ...]) -> list[int] | None:
        """The prompt with its last turn asking only `clauses` (a partial answer), or None
        where that turn cannot be found as `texts` read it.

        The turn's token ids are replaced by the tokens of the same turn written with those
        clauses: a chat template puts a turn between special tokens, and its text there is
        tokenized alone, as the renderer would tokenize the shorter message. Its role may
        open the same piece ("<|im_start|>user\n...") or one of its own
        ("<|start_header_id|>user<|end_header_id|>"); the piece must read as the whole turn.
        """
        turns = self.texts(token_ids)
        for start, end in reversed(self._pieces(token_ids)):
            text = self.tokenizer.decode(token_ids[start:end])
            role = _ROLE_LINE.match(text)
            body = text[role.end() :] if role else text
            if not body.strip():
                continue  # the generation prompt's role line, or what lies between turns
            if not turns or body.strip() != turns[-1]:
                return None  # the turn is cut by special tokens, or read together with others
            head = text[: len(text) - len(body.lstrip())]
            tail = body[len(body.rstrip()) :]
            ids = self.tokenizer.encode(head + " ".join(clauses) + tail, add_special_tokens=False)
            return [*token_ids[:start], *ids, *token_ids[end:]]
        return None

    def _pieces(self, token_ids: list[int]) -> list[tuple[int, int]]:
        """(start, end) of the run of ordinary tokens before the first special token and
        after each one (empty where two special tokens meet)."""
        pieces, start = [], 0
        for i, token in enumerate(token_ids):
            if token in self.special:
                pieces.append((start, i))
                start = i + 1
        pieces.append((start, len(token_ids)))
        return pieces

    def _boilerplate(self) -> frozenset[str]:
        if getattr(self.tokenizer, "chat_template", None) is None:
            return frozenset()
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        self.boilerplate = frozenset()
        return frozenset(t for t in self.texts(ids) if _SENTINEL not in t)
