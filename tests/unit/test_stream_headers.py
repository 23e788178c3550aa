"""A stream's headers say what was enforced even when they leave before the engine runs."""

from __future__ import annotations

import asyncio

from guard_server.engine_guard import current_scope
from guard_server.guard import Verdict
from guard_server.surface import HEADER_ACTION, GuardScopeMiddleware

EVENT_STREAM = [(b"content-type", b"text/event-stream; charset=utf-8")]


def start(headers=EVENT_STREAM) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def body(data: bytes, more: bool = True) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


def serve(app, log: list[str] | None = None) -> list[dict]:
    """Run `app` behind the middleware; what reached the client, in order (its types also
    appended to `log` as they arrive)."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)
        if log is not None:
            log.append(message["type"])

    async def receive() -> dict:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "POST", "path": "/v1/responses", "headers": []}
    asyncio.run(GuardScopeMiddleware(app)(scope, receive, send))
    return sent


def header(message: dict) -> str | None:
    return dict(message["headers"]).get(HEADER_ACTION.encode(), b"").decode() or None


def test_events_sent_before_the_engine_wait_for_its_verdict():
    async def app(scope, receive, send):
        await send(start())
        await send(body(b"event: response.created\n\n"))  # before the engine is called
        current_scope().record(Verdict(action="refuse"))  # the seam, at the engine
        await send(body(b"event: delta\n\n"))
        await send(body(b"", more=False))

    sent = serve(app)
    assert header(sent[0]) == "refuse"
    assert [m.get("body") for m in sent[1:]] == [
        b"event: response.created\n\n",
        b"event: delta\n\n",
        b"",
    ]


def test_a_stream_that_never_reaches_the_engine_is_still_delivered_whole():
    async def app(scope, receive, send):
        await send(start())
        await send(body(b"event: error\n\n", more=False))

    sent = serve(app)
    assert header(sent[0]) is None and sent[1]["body"] == b"event: error\n\n"


def test_a_plain_response_is_not_held():
    order: list[str] = []

    async def app(scope, receive, send):
        await send(start([(b"content-type", b"application/json")]))
        order.append("after start")
        await send(body(b"{}", more=False))

    serve(app, order)
    assert order == ["http.response.start", "after start", "http.response.body"]
