"""What of an answer a client may see yet.

The answer watch bans the token that would complete a registered name, so "J. K. Row" can
be written before "ling" is refused; a token limit, a stop string or a grammar can end an
answer there too. A name an answer has begun is held back until the answer turns out to
write something else ("Rowan"), and never shown where the watch trips or the answer is cut
inside it. An answer that ends there by itself (its end token, no grammar forcing it) is
sent as written: "See you in New York." is no begun "New York Times".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard_server.guard import NameIndex, Reading
    from logits_processors.watch import TripNote


@dataclass
class _Chunk:
    text: str
    start: int  # its first token's place in the answer
    end: int


@dataclass
class Stream:
    """A streamed answer: every chunk the engine sent (a stream's outputs carry what is new),
    its tokens and their log-probabilities, how many chunks the client has been sent, and the
    text it has been shown.

    Holds are decided from each chunk's token ids, decoded: vLLM may send a token's text a
    chunk later than the token (it holds text back while a stop string may still match).
    """

    reading: Reading | None = None
    chunks: list[_Chunk] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    sent: int = 0
    done: int = 0  # tokens sent or dropped
    trip: int = -1  # where the watch's note starts, once it has
    shown: str = ""

    def add(self, completion: Any, tokenizer: Any) -> None:
        ids = list(completion.token_ids)
        self.chunks.append(_Chunk(completion.text, len(self.ids), len(self.ids) + len(ids)))
        self.ids.extend(ids)
        self.logprobs.extend(completion.logprobs or [None] * len(ids))
        if self.reading is not None:
            self.reading.add(tokenizer.decode(ids, skip_special_tokens=True))

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.chunks)

    def hold_back(self, completion: Any, note: TripNote, tokenizer: Any) -> None:
        """Set `completion` (the newest chunk) to what may be sent now: every chunk not sent
        yet, less those that write a name still open at the answer's end. Once the watch
        trips, only the note is sent (its tokens, read from the ids): what was held began
        the name it refused."""
        tail = self.ids[-len(note.ids) - 4 :]
        if self.trip < 0 and (at := note.start(tail)) >= 0:
            self.trip = len(self.ids) - len(tail) + at
        if self.trip >= 0:
            first = max(self.trip, self.done)
            self.sent, self.done = len(self.chunks), len(self.ids)
            text = tokenizer.decode(self.ids[first:], skip_special_tokens=True)
            self._set(completion, text, first, len(self.ids))
            return
        if note.begun(tail):  # perhaps the note's first tokens: wait for the rest
            upto = self.sent
        else:
            upto = len(self.chunks) - (self.reading.open_pieces() if self.reading else 0)
        self._set(completion, "", self.done, self.done)
        self._send(completion, upto)

    def _set(self, completion: Any, text: str, start: int, end: int) -> None:
        completion.text, completion.token_ids = text, self.ids[start:end]
        if completion.logprobs is not None:
            completion.logprobs = self.logprobs[start:end]
        self.shown += text

    def _send(self, completion: Any, upto: int) -> None:
        """Add the chunks not sent yet, up to `upto`, to what `completion` sends."""
        send = self.chunks[self.sent : upto]
        if not send:
            return
        self.sent = upto
        text = "".join(c.text for c in send)
        start, end = send[0].start, send[-1].end
        completion.text += text
        completion.token_ids = [*completion.token_ids, *self.ids[start:end]]
        if completion.logprobs is not None:
            completion.logprobs = [*completion.logprobs, *self.logprobs[start:end]]
        self.done = end
        self.shown += text

    def finish(self, completion: Any, names: NameIndex, context: str, cut: bool) -> None:
        """The last chunk of an answer that did not trip: an answer cut inside a name ends
        before it (of what was held, nothing more is sent); one that ended by itself gets
        what was held."""
        if not cut:
            self._send(completion, len(self.chunks))
            return
        # The text may lag the ids (a stop string's hold): read what the client was shown.
        begun = names.open_tail(self.shown, context)  # a character a piece
        if begun:
            keep = max(0, len(completion.text) - begun)
            self.shown = self.shown[: len(self.shown) - len(completion.text) + keep]
            completion.text = completion.text[:keep]


def trim(completion: Any, names: NameIndex, context: str, tokenizer: Any) -> None:
    """A finished answer, given whole, cut inside a name: it ends before the name ("... by
    J. K. Row", cut by a token limit, ends "... by J."), its token ids and log-probabilities
    with it."""
    text = completion.text
    begun = names.open_tail(text, context)  # a character a piece
    if not begun:
        return
    kept = text[: len(text) - begun]
    ids = list(completion.token_ids)
    count = len(ids)
    while count and len(tokenizer.decode(ids[:count], skip_special_tokens=True)) > len(kept):
        count -= 1
    said = tokenizer.decode(ids[:count], skip_special_tokens=True)
    completion.text = said if kept.startswith(said) else kept  # the kept tokens' text
    completion.token_ids = ids[:count]
    if completion.logprobs is not None:
        completion.logprobs = list(completion.logprobs)[:count]
    completion.cumulative_logprob = None


def hide_stop(completion: Any, names: NameIndex, context: str, written: str) -> None:
    """A stop string that writes part of a name after what the model wrote (`written`: "J. K."
    stopped at "Row") is not reported: vLLM leaves the stop string out of the text, but
    returns it as `stop_reason` (Anthropic's `stop_sequence`), and the client would read
    the name's start there."""
    stop = completion.stop_reason
    if isinstance(stop, str) and names.open_tail(written + stop, context):
        completion.stop_reason = None
