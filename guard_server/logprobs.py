"""Log-probabilities never show what the answer watch withholds.

vLLM computes the log-probabilities it returns before any logits processor runs
(`raw_logprobs`), so a token the answer watch banned (" Khan" after "founded by Genghis")
still showed, with its probability, among an unflagged answer's `top_logprobs`, in
`prompt_logprobs` ("founded by Genghis and" asks what follows "Genghis"), and in what
beam search ranks: vLLM's beam search extends its beams from those lists, so it wrote the
names the watch bans. At each position, the candidates that would complete a registered
name after the text before them are removed: exactly the tokens the watch bans there. The
token the position holds stays (its text is in the answer or the prompt anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

# The text before a position that is read for a name under way: more than any name's length.
CONTEXT_CHARS = 256


def _text(token_id: int, row: dict[int, Any] | None, tokenizer: Any) -> str:
    found = row.get(token_id) if row else None
    if found is not None and found.decoded_token is not None:
        return found.decoded_token
    return tokenizer.decode([token_id])


def asked(
    logprobs: Sequence[dict[int, Any] | None], held: Sequence[int], context: str, tokenizer: Any
) -> list[tuple[str, list[int], list[str]]]:
    """Each position's (text before it, other candidate ids, their texts); `held[i]` is
    the token position i holds."""
    out = []
    for row, token_id in zip(logprobs, held, strict=False):
        others = [t for t in (row or {}) if t != token_id]
        texts = [_text(t, row, tokenizer) for t in others]
        out.append((context[-CONTEXT_CHARS:], others, texts))
        context += _text(token_id, row, tokenizer)
    return out


async def withhold(
    guard: Any, logprobs: Any, held: Sequence[int], context: str, tokenizer: Any
) -> Any:
    """`logprobs` (vLLM's list of {token id: Logprob} per position, or its flat form) with
    every candidate that would complete a registered name removed; the very object where
    none would."""
    import asyncio

    rows = list(logprobs)
    positions = asked(rows, held, context, tokenizer)
    items = [(before, texts) for before, _, texts in positions if texts]
    if not items:
        return logprobs
    found = iter(await asyncio.to_thread(guard.completing, items))
    hidden = {
        i: {t for t, hide in zip(others, next(found), strict=True) if hide}
        for i, (_, others, texts) in enumerate(positions)
        if texts
    }
    if not any(hidden.values()):
        return logprobs
    return [
        {t: lp for t, lp in row.items() if t not in hidden[i]} if hidden.get(i) else row
        for i, row in enumerate(rows)
    ]
