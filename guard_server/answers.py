"""What of an answer a client may see yet.

The answer watch bans the token that would complete a registered name, so "J. K. Row" can
be written before "ling" is refused; a token limit or a stop string can cut an answer there
too. A name an answer has begun is held back until the answer turns out to write something
else ("Rowan"), and never shown where the answer ends inside it or the watch trips there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard_server.guard import NameIndex

# Tokens of a finished answer read to find a name it ends inside (names are shorter).
TAIL_TOKENS = 32


@dataclass
class _Chunk:
    text: str
    ids: list[int]
    logprobs: list[Any] | None


@dataclass
class Stream:
    """A streamed answer: every chunk the engine sent (a stream's outputs carry what is new),
    and how many of them the client has been sent."""

    chunks: list[_Chunk] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # every chunk's, in order
    sent: int = 0

    def add(self, completion: Any) -> None:
        logprobs = list(completion.logprobs) if completion.logprobs is not None else None
        self.chunks.append(_Chunk(completion.text, list(completion.token_ids), logprobs))
        self.ids.extend(completion.token_ids)

    @property
    def pieces(self) -> list[str]:
        return [c.text for c in self.chunks]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def hold_back(self, completion: Any, names: NameIndex, context: str, trip: int = -1) -> None:
        """Set `completion` (the newest chunk) to what may be sent now: every chunk not sent
        yet, less those that write a name still open at the answer's end. From `trip` (the
        token the watch's note starts at) on everything is sent, and what was held before
        it never is: it began the name the watch refused."""
        if trip >= 0:
            self.sent = max(self.sent, self._chunk_of(trip))
            upto = len(self.chunks)
        else:
            recent = self.chunks[-TAIL_TOKENS:]  # a chunk writes a token or more
            context = context if len(recent) == len(self.chunks) else ""
            upto = len(self.chunks) - names.open_tail([c.text for c in recent], context)
        send = self.chunks[self.sent : upto]
        self.sent = max(self.sent, upto)
        completion.text = "".join(c.text for c in send)
        completion.token_ids = [t for c in send for t in c.ids]
        if completion.logprobs is not None:
            completion.logprobs = [p for c in send for p in (c.logprobs or ())]

    def _chunk_of(self, token: int) -> int:
        seen = 0
        for i, chunk in enumerate(self.chunks):
            seen += len(chunk.ids)
            if token < seen:
                return i
        return len(self.chunks)


def trim(completion: Any, names: NameIndex, context: str, tokenizer: Any) -> None:
    """A finished answer, given whole, without a name it ends inside ("... by J. K. Row" cut
    by a token limit ends "... by")."""
    ids = list(completion.token_ids)
    if not ids:
        return
    tail = ids[-TAIL_TOKENS:]
    before = context if len(ids) <= TAIL_TOKENS else tokenizer.decode(ids[:-TAIL_TOKENS])
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in tail]
    held = names.open_tail(pieces, before)
    if not held:
        return
    cut = "".join(pieces[-held:])
    text = completion.text
    completion.text = (
        text[: len(text) - len(cut)]
        if text.endswith(cut)
        else (tokenizer.decode(ids[:-held], skip_special_tokens=True))
    )
    completion.token_ids = ids[:-held]
    if completion.logprobs is not None:
        completion.logprobs = list(completion.logprobs)[: len(ids) - held]
