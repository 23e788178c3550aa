"""Bounded work per request: nothing is read or screened beyond what the engine could run.

A body is refused by its size before it is read (`BodyLimit`, 413); a conversation by its
length before it is screened (`check_length`, 400, as vLLM words it); what is left to screen
is capped (`MAX_SCREEN_CHARS`): a longer conversation fails closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guard_server import errors

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bytes of request body per token of context: JSON escapes make a character up to 12 bytes
# ("\ud83d\ude00"), and a token holds a few characters; a body past this cannot fit.
BODY_BYTES_PER_TOKEN = 64
MIN_BODY_BYTES = 64 * 1024
# The admin API (authenticated; its models bound every field) takes registrations and bulk
# imports with documents: far more than a prompt, never run by the engine.
ADMIN_BODY_BYTES = 64 * 1024 * 1024
# Characters per token beyond which a text certainly exceeds the context: no tokenizer
# needed to refuse it.
CHARS_PER_TOKEN = 32
# What detection screens of one request at most: about 64 of its 600-character chunks.
MAX_SCREEN_CHARS = 38_400
ERR_BODY = "the request body is {size} bytes; at most {limit} bytes are accepted"
ERR_CONTEXT = (
    "This model's maximum context length is {limit} tokens. However, your messages resulted "
    "in {count} tokens. Please reduce the length of the messages."
)
ERR_SCREEN = (
    "the conversation holds {count} characters; the guard screens at most {limit} per "
    "request, so it is not answered"
)


def max_body_bytes(max_model_len: int) -> int:
    return max(MIN_BODY_BYTES, max_model_len * BODY_BYTES_PER_TOKEN)


class BodyLimit:
    """Refuses a request whose body is larger than `limit` bytes (`admin_limit` on paths
    `is_admin` accepts: the admin API): by its Content-Length before reading a byte, or,
    sent in chunks, as soon as the chunks pass the limit."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        admin_limit: int = ADMIN_BODY_BYTES,
        is_admin: Callable[[str], bool] = lambda path: False,
    ):
        self.app = app
        self.is_admin = is_admin
        self.limit = limit
        self.admin_limit = admin_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.admin_limit if self.is_admin(scope["path"]) else self.limit
        length = dict(scope.get("headers", ())).get(b"content-length", b"0")
        size = int(length) if length.isdigit() else 0
        if size > limit:
            await _refuse(send, size, limit)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                refused = True
                raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge as exc:
            await _refuse(send, exc.size, limit)


class _TooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


async def _refuse(send: Send, size: int, limit: int) -> None:
    from starlette.responses import JSONResponse

    body = errors.envelope(ERR_BODY.format(size=size, limit=limit), "BadRequestError", 413)
    response = JSONResponse(body, status_code=413)
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def check_length(texts: list[str], max_model_len: int, tokenizer: Any) -> None:
    """A conversation that cannot fit the context is refused before it is screened: by its
    characters alone when that is certain, else by its tokens (as vLLM counts them).

    Raises:
        VLLMValidationError: naming `messages` (vLLM's handlers answer it with a 400).
    """
    from vllm.exceptions import VLLMValidationError

    chars = sum(map(len, texts))
    count: int | str = 0
    if chars > max_model_len * CHARS_PER_TOKEN:
        count = f"more than {chars // CHARS_PER_TOKEN}"
    elif chars * 4 > max_model_len:  # a character is at most four tokens (its bytes)
        count = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        count = count if count > max_model_len else 0
    if count:
        message = ERR_CONTEXT.format(limit=max_model_len, count=count)
        raise VLLMValidationError(message, parameter="messages")


def check_screenable(texts: list[str]) -> None:
    """What the guard cannot screen whole is not answered (fail closed).

    Raises:
        VLLMValidationError: naming `prompt`.
    """
    from vllm.exceptions import VLLMValidationError

    chars = sum(map(len, texts))
    if chars > MAX_SCREEN_CHARS:
        message = ERR_SCREEN.format(count=chars, limit=MAX_SCREEN_CHARS)
        raise VLLMValidationError(message, parameter="prompt")
