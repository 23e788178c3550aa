"""What a response says about the guard: each request's `Outcome`, read back at the end.

`x-guard-action` (and, for an admin, `x-guard-targets`) on every response; on the JSON body
of a chat or text completion, a `guard` object too (`Verdict.report`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders

from guard_server import outcome
from guard_server.auth import AdminKeys
from guard_server.surface import ENGINE_ROUTES, is_admin

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER_ACTION = "x-guard-action"
HEADER_TARGETS = "x-guard-targets"
RETRY_AFTER_S = "1"
# Bodies that carry a `guard` object: the completions APIs, whose clients read extra fields.
REPORTED_BODIES = frozenset({"/v1/chat/completions", "/v1/completions"})


class ReportMiddleware:
    """Opens each request's `Outcome` and reports it in the response.

    A stream (chat, completions, Responses, Anthropic Messages) may send its headers and first
    events before it calls the engine, where its verdict is decided: its start is held, with
    what follows it, until every prompt it handed to the engine has a verdict or the response
    ends. A completion's JSON body is held to its end and gets the `guard` object.
    """

    def __init__(self, app: ASGIApp, admin_keys: AdminKeys | None = None):
        self.app = app
        self.admin_keys = admin_keys or AdminKeys()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request, token = outcome.opened(is_admin(Headers(scope=scope), self.admin_keys))
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        # Only a POST to a route that reaches the engine waits for a verdict: a stream served
        # without an engine call (a stored response read back) would be held to its end.
        engine = scope["method"] == "POST" and path in ENGINE_ROUTES
        response = _Response(request, send, engine, engine and path in REPORTED_BODIES)
        try:
            await self.app(scope, receive, response.send)
        finally:
            outcome.close(token)


class _Response:
    """One response on its way out: its messages, held while the outcome is not known."""

    def __init__(self, request: outcome.Outcome, send: Send, engine: bool, reports_body: bool):
        self.request = request
        self._send = send
        self.engine = engine  # whether the request reaches the engine (has a verdict to wait for)
        self.reports_body = reports_body
        self.held: list[Message] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.held.append(message)
            if not self._holds(message):
                await self._flush()
            return
        if not self.held:
            await self._send(message)
            return
        self.held.append(message)
        ends = not message.get("more_body", False)
        if _streams(self.held[0]) and (self.request.decided or ends):
            await self._flush()
        elif ends:
            await self._flush(_body(self.held[1:]))

    def _holds(self, start: Message) -> bool:
        if _streams(start):
            return self.engine and not self.request.decided
        return self.reports_body and start["status"] == 200 and _json(start)

    async def _flush(self, body: bytes | None = None) -> None:
        start, rest = self.held[0], self.held[1:]
        self.held = []
        headers = self._headers(start)
        if body is not None:
            body = _with_member(body, "guard", self.request.verdict.report(self.request.admin))
            headers["content-length"] = str(len(body))
            rest = [{"type": "http.response.body", "body": body, "more_body": False}]
        await self._send(start)
        for message in rest:
            await self._send(message)

    def _headers(self, start: Message) -> MutableHeaders:
        headers = MutableHeaders(scope=start)
        if start.get("status") == 503:  # detection missed its deadline: retry soon
            headers.setdefault("retry-after", RETRY_AFTER_S)
        if self.request.enforced is not None:
            verdict = self.request.verdict
            headers[HEADER_ACTION] = verdict.action
            if self.request.admin:
                headers[HEADER_TARGETS] = verdict.header()
        return headers


def _body(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages)


def _with_member(body: bytes, name: str, value: object) -> bytes:
    """A JSON object's text with one more member at its end; any other body as it was."""
    head = body.rstrip()
    if not (body.lstrip().startswith(b"{") and head.endswith(b"}")):
        return body
    head = head[:-1].rstrip()
    comma = b"" if head.endswith(b"{") else b","
    return head + comma + json.dumps(name).encode() + b":" + json.dumps(value).encode() + b"}"


def _json(start: Message) -> bool:
    return _content_type(start).startswith(b"application/json")


def _streams(start: Message) -> bool:
    return _content_type(start).startswith(b"text/event-stream")


def _content_type(start: Message) -> bytes:
    return dict(start.get("headers", [])).get(b"content-type", b"")
